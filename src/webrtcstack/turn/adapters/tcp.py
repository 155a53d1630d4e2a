# -*- test-case-name: tests.integration.test_stun_sockets -*-
"""STUN over TCP (RFC 8489 §6.2.2): a thin :class:`Protocol` around the stream framer.

Builder (called by the service wiring)::

    listen_stun_tcp(reactor, host: str, port: int, controller: StunController,
                    *, max_frame_size: int = 4096, idle_timeout_s: float = 300.0,
                    log_interval_s: float = 10.0) -> IListeningPort

or build a :class:`StunStreamFactory` and listen with it yourself (TLS wraps
the same factory).

Per connection: a :class:`~webrtcstack.stun.framing.StreamFramer` cuts the
stream into frames; each frame goes to ``controller.handle(frame, peer,
"tcp")`` and the reply is written back.  A framing error or a frame the
controller refuses closes the connection (the stream cannot be trusted any
more) and is counted; the log line is rate-limited per listener.  A
connection silent for ``idle_timeout_s`` is closed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from webrtcstack.sockets import listen_tcp
from webrtcstack.stun.attributes import normalize_host
from webrtcstack.stun.errors import StunDecodeError
from webrtcstack.stun.framing import StreamFramer
from webrtcstack.turn.adapters import StunController
from webrtcstack.turn.adapters._ratelimit import RateLimitedLog

__all__ = ["StunStreamProtocol", "StunStreamFactory", "listen_stun_tcp"]

log = Logger()


class StunStreamProtocol(Protocol):
    """One STUN-over-TCP connection."""

    factory: StunStreamFactory

    def __init__(self) -> None:
        self.peer: tuple[str, int] = ("", 0)
        self.framer: StreamFramer | None = None
        self._idle_call: IDelayedCall | None = None
        self._closing = False

    def connectionMade(self) -> None:
        address = self.transport.getPeer()
        self.peer = (normalize_host(address.host), address.port)
        self.framer = StreamFramer(self.factory.max_frame_size)
        self.factory.connections += 1
        if self.factory.idle_timeout_s > 0:
            self._idle_call = self.factory.clock.callLater(self.factory.idle_timeout_s, self._idle)

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self.framer is None:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self.factory.idle_timeout_s)
        factory = self.factory
        try:
            for frame in self.framer.feed(data):
                reply = factory.controller.handle(frame, self.peer, factory.transport_name)
                if reply is not None:
                    self.transport.write(reply)
        except StunDecodeError as e:
            factory.dropped += 1
            factory.malformed_log.warn(
                "STUN/TCP: closing connection from {peer}: {error}", peer=self.peer, error=str(e))
            self._close()

    def _idle(self) -> None:
        self._idle_call = None
        self._close()

    def _close(self) -> None:
        self._closing = True
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        self.factory.connections -= 1


class StunStreamFactory(Factory):
    """Builds :class:`StunStreamProtocol` for one listener; holds its counters.

    :param transport_name: passed to the controller (``"tcp"``, or ``"tls"``
        when a TLS wrapper sits in front).
    :ivar dropped: connections closed for malformed input.
    :ivar connections: connections open now.
    """

    protocol = StunStreamProtocol

    def __init__(
        self, controller: StunController, clock: IReactorTime, *, max_frame_size: int = 4096,
        idle_timeout_s: float = 300.0, log_interval_s: float = 10.0, transport_name: str = "tcp",
    ) -> None:
        self.controller = controller
        self.clock = clock
        self.max_frame_size = max_frame_size
        self.idle_timeout_s = idle_timeout_s
        self.transport_name = transport_name
        self.dropped = 0
        self.connections = 0
        self.malformed_log = RateLimitedLog(log, clock, log_interval_s)


def listen_stun_tcp(
    reactor: Any, host: str, port: int, controller: StunController, *, max_frame_size: int = 4096,
    idle_timeout_s: float = 300.0, log_interval_s: float = 10.0,
) -> IListeningPort:
    """Listen for STUN over TCP on ``host:port`` and serve it with ``controller``."""
    factory = StunStreamFactory(
        controller, reactor, max_frame_size=max_frame_size, idle_timeout_s=idle_timeout_s,
        log_interval_s=log_interval_s)
    return listen_tcp(reactor, host, port, factory)
