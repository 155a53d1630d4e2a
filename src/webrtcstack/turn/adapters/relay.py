# -*- test-case-name: tests.integration.test_turn_sockets -*-
"""Relay sockets: one UDP socket per allocation and family, read without ``udp.Port``.

Why not ``reactor.adoptDatagramPort``: a Twisted ``udp.Port`` logs a line
when it closes and closes through ``callLater(0, …)``, which leaves a delayed
call behind every expired allocation; its ``write`` re-validates the address
on every packet.  A relay is simpler than that: :class:`RelayReader` is an
``IReadDescriptor`` whose ``doRead`` drains the socket (bounded per wake-up)
straight into :meth:`Allocation.handle_peer_datagram`, and whose ``close``
is synchronous.

Opening a relay is on every Allocate, so it is a handful of system calls:
``socket`` (already non-blocking, ``SOCK_NONBLOCK``), the buffer sizes,
``bind`` and the epoll registration; the bound address is the one asked for,
so it is not read back with ``getsockname``.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from zope.interface import implementer
from twisted.internet.interfaces import IReadDescriptor

from webrtcstack.turn.allocation import Allocation

__all__ = ["RelayReader", "SocketRelayOpener"]

#: Datagrams read per wake-up before yielding to other sockets.
READS_PER_WAKEUP = 64
RELAY_BUFFER_BYTES = 1 << 20
_IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
_IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
_IPV6_DONTFRAG = getattr(socket, "IPV6_DONTFRAG", 62)
_SOCK_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
_REFUSED = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


@implementer(IReadDescriptor)
class RelayReader:
    """One bound relay socket of one allocation (implements ``turn.allocation.Relay``)."""

    def __init__(self, reactor: Any, sock: socket.socket, allocation: Allocation,
                 address: tuple[str, int] | None = None, v6: bool | None = None) -> None:
        self.reactor = reactor
        self.sock = sock
        self.address: tuple[str, int] = address if address is not None else sock.getsockname()[:2]
        self.allocation = allocation
        #: the socket's own ``sendto`` (the core calls it per relayed packet, and counts errors)
        self.sendto = sock.sendto
        self._fd = sock.fileno()
        # ``sock.family`` builds an enum member per read: the opener knows the family already.
        self._v6 = v6 if v6 is not None else sock.family == socket.AF_INET6

    # -- Relay (core-facing) ------------------------------------------------

    def close(self) -> None:
        """Stop reading and close the socket now (no delayed call is left)."""
        if self._fd >= 0:
            self.reactor.removeReader(self)
            self._fd = -1
            self.sock.close()

    # -- IReadDescriptor ----------------------------------------------------

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        recvfrom = self.sock.recvfrom
        deliver = self.allocation.handle_peer_datagram
        now = self.reactor.seconds()
        v6 = self._v6
        for _ in range(READS_PER_WAKEUP):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ECONNREFUSED and friends from an earlier send: nothing to read.
                return
            if v6:
                addr = addr[:2]
            deliver(data, addr, now)

    def connectionLost(self, reason: Any) -> None:
        self.close()

    def logPrefix(self) -> str:
        return "TurnRelay"


class SocketRelayOpener:
    """Binds relay sockets for the engine (the engine's ``RelayOpener``).

    ``driver`` (set once the driver exists) is what RFC 6062's TCP sockets
    report to (:mod:`webrtcstack.turn.adapters.tcp_relay`).
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.driver: Any = None

    def open_tcp_relay(self, host: str, port: int, allocation: Allocation) -> Any:
        """RFC 6062: a TCP allocation's relayed address, listening; None if the port is taken."""
        from webrtcstack.turn.adapters.tcp_relay import open_tcp_relay

        return open_tcp_relay(self.driver, host, port, allocation)

    def connect_tcp(self, relay: Any, peer: tuple[str, int], connection: Any) -> Any:
        """RFC 6062: connect from ``relay``'s address to ``peer``; None if refused at once."""
        from webrtcstack.turn.adapters.tcp_relay import connect_tcp

        return connect_tcp(self.driver, relay, peer, connection)

    def open_relay(self, host: str, port: int, allocation: Allocation, dont_fragment: bool) -> RelayReader | None:
        """Bind ``host:port``; None if the port is taken by someone else."""
        v6 = ":" in host
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM | _SOCK_NONBLOCK)
        try:
            if not _SOCK_NONBLOCK:
                sock.setblocking(False)
            try:
                # Buffers before bind: no datagram can arrive with the small default ones.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RELAY_BUFFER_BYTES)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RELAY_BUFFER_BYTES)
                if dont_fragment:
                    if v6:
                        sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_DONTFRAG, 1)
                    else:
                        sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DO)
            except OSError:
                pass
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            if e.errno in _REFUSED:
                return None
            raise
        except BaseException:
            sock.close()
            raise
        relay = RelayReader(self.reactor, sock, allocation, (host, port), v6)
        self.reactor.addReader(relay)
        return relay
