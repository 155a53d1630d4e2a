# -*- test-case-name: tests.integration.test_stun_sockets -*-
"""STUN over UDP: a thin :class:`DatagramProtocol` in front of a controller.

Builder (called by the service wiring)::

    listen_stun_udp(reactor, host: str, port: int, controller: StunController,
                    *, software_log_interval_s: float = 10.0) -> IListeningPort

``port`` may be 0 (tests); ``listening.getHost().port`` tells the bound port.
IPv6 hosts get a v6-only socket (see :mod:`webrtcstack.sockets`).

Per datagram: normalise the source address (Twisted gives IPv6 peers as
4-tuples; v4-mapped IPv6 becomes IPv4), call ``controller.handle``, write the
reply back.  A :class:`StunDecodeError` drops the datagram and counts it; a log
line about it appears at most once per interval per listener.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from webrtcstack.sockets import listen_udp
from webrtcstack.stun.attributes import normalize_host
from webrtcstack.stun.errors import StunDecodeError
from webrtcstack.turn.adapters import StunController
from webrtcstack.turn.adapters._ratelimit import RateLimitedLog

__all__ = ["StunDatagramProtocol", "listen_stun_udp"]

log = Logger()


class StunDatagramProtocol(DatagramProtocol):
    """Hands each datagram to ``controller`` and sends its reply.

    :ivar dropped: datagrams the controller refused as malformed.
    :ivar failures: datagrams whose handling raised an unexpected exception.
    """

    def __init__(self, controller: StunController, clock: IReactorTime, *, log_interval_s: float = 10.0) -> None:
        self.controller = controller
        self.dropped = 0
        self.failures = 0
        self._malformed_log = RateLimitedLog(log, clock, log_interval_s)
        self._failure_log = RateLimitedLog(log, clock, log_interval_s)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        # IPv6 sources arrive as (host, port, flowinfo, scope_id); keep ``addr``
        # itself for the reply so a link-local scope survives.
        source = (normalize_host(addr[0]), addr[1])
        try:
            reply = self.controller.handle(datagram, source, "udp")
        except StunDecodeError as e:
            self.dropped += 1
            self._malformed_log.warn(
                "STUN/UDP: dropped a malformed datagram from {source}: {error}", source=source, error=str(e))
            return
        except Exception as e:  # a bug must not stop the listener, nor log per packet
            self.failures += 1
            self._failure_log.warn(
                "STUN/UDP: error handling a datagram from {source}: {error!r}", source=source, error=e)
            return
        if reply is not None:
            self.transport.write(reply, addr)


def listen_stun_udp(
    reactor: Any, host: str, port: int, controller: StunController, *, log_interval_s: float = 10.0,
) -> IListeningPort:
    """Listen for STUN datagrams on ``host:port`` and serve them with ``controller``."""
    protocol = StunDatagramProtocol(controller, reactor, log_interval_s=log_interval_s)
    return listen_udp(reactor, host, port, protocol)
