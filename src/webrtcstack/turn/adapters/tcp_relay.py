# -*- test-case-name: tests.integration.test_turn_tcp_relay -*-
"""RFC 6062 TCP relay, the sockets: relayed TCP listeners, connects to peers, and the peer connections.

The core (:mod:`webrtcstack.turn.tcp_relay`, the allocation manager and the
engine) decides everything; this module only moves bytes:

* :class:`TcpRelayListener` is a TCP allocation's relayed address: a
  listening socket read as an ``IReadDescriptor`` (like the UDP relays, so
  closing it is synchronous and leaves no delayed call).  Each accepted
  socket is handed to the reactor with ``adoptStreamConnection`` and
  becomes a :class:`TcpPeerProtocol`, which asks the engine whether to keep it.
* :class:`TcpConnector` is a Connect in progress: a non-blocking connect
  from the relayed address (``SO_REUSEADDR`` and ``SO_REUSEPORT``, so it
  shares the port with the listener), watched as an ``IWriteDescriptor``;
  once connected the socket is adopted the same way.
* Once a ConnectionBind has succeeded, the client data connection (a
  :class:`~webrtcstack.turn.adapters.client_stream.TurnStreamProtocol`) and
  the :class:`TcpPeerProtocol` write to each other directly, each registered
  as the other's producer, so a slow side pauses the fast one (TCP flow
  control end to end; nothing is dropped).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from zope.interface import implementer
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from webrtcstack.stun.attributes import normalize_host
from webrtcstack.turn.tcp_relay import TcpConnection

__all__ = ["TcpRelayListener", "TcpConnector", "TcpPeerProtocol", "open_tcp_relay", "connect_tcp", "Pacer"]

_SOCK_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
_REUSEPORT = getattr(socket, "SO_REUSEPORT", None)
#: connections accepted per wake-up of a relayed TCP listener
ACCEPTS_PER_WAKEUP = 16
LISTEN_BACKLOG = 16
_REFUSED = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def _stream_socket(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket bound to ``host:port``, sharing the port with the relay's other sockets."""
    v6 = ":" in host
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM | _SOCK_NONBLOCK)
    try:
        if not _SOCK_NONBLOCK:
            sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if _REUSEPORT is not None:
            sock.setsockopt(socket.SOL_SOCKET, _REUSEPORT, 1)
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Pacer:
    """Pauses a transport for a while (the ``max_bps`` budget of a TCP pipe), then resumes it."""

    def __init__(self, reactor: Any, transport: Any) -> None:
        self.reactor = reactor
        self.transport = transport
        self.call: Any = None

    def pause_for(self, seconds: float) -> None:
        if self.call is not None and self.call.active():
            return
        self.transport.pauseProducing()
        self.call = self.reactor.callLater(seconds, self._resume)

    def _resume(self) -> None:
        self.call = None
        self.transport.resumeProducing()

    def cancel(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None


class TcpPeerProtocol(Protocol):
    """One peer TCP connection (a ``PeerLink`` of the core): held bytes until bound, then a pipe.

    :param connection: the core's connection (a Connect's); None for an
        accepted one, which asks the engine in :meth:`connectionMade`.
    """

    def __init__(self, driver: Any, connection: TcpConnection | None, allocation: Any = None) -> None:
        self.driver = driver
        self.connection = connection
        self.allocation = allocation
        #: the client data connection's transport, once bound
        self.other: Any = None
        self._counted = False
        self._pacer: Pacer | None = None

    # -- PeerLink -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        self.transport.loseConnection()

    def pause(self) -> None:
        self.transport.pauseProducing()

    def resume(self) -> None:
        self.transport.resumeProducing()

    # -- Protocol -----------------------------------------------------------

    def connectionMade(self) -> None:
        driver = self.driver
        driver.stream_connections += 1
        self._counted = True
        if self.connection is None:  # accepted on a relayed address (RFC 6062 §5.3)
            peer = self.transport.getPeer()
            self.connection = driver.engine.tcp_peer_arrived(
                self.allocation, (normalize_host(peer.host), peer.port), self, now=driver.reactor.seconds())
            if self.connection is None:
                self.transport.abortConnection()

    def bind(self, other: Any) -> None:
        """ConnectionBind succeeded: pipe to the client data connection's transport ``other``."""
        self.other = other
        other.registerProducer(self.transport, True)
        self.transport.registerProducer(other, True)
        if self.connection is not None and self.connection.paused:
            self.connection.paused = False
            self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        connection = self.connection
        if connection is None:
            return
        other = self.other
        if other is not None:
            other.write(data)
            delay = connection.relayed(len(data), False, self.driver.reactor.seconds())
            if delay:
                if self._pacer is None:
                    self._pacer = Pacer(self.driver.reactor, self.transport)
                self._pacer.pause_for(delay)
        elif self.driver.engine.tcp_peer_data(connection, data):
            self.transport.pauseProducing()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
        if self._counted:
            self._counted = False
            self.driver.stream_connections -= 1
        connection, self.connection = self.connection, None
        if connection is not None:
            self.driver.engine.tcp_link_lost(connection, now=self.driver.reactor.seconds())
            self.driver.rearm()


class _OneProtocol(Factory):
    """Hands an adopted socket its protocol (already built)."""

    noisy = False

    def __init__(self, made: Protocol) -> None:
        self.made = made

    def buildProtocol(self, addr: Any) -> Protocol:
        return self.made


@implementer(IReadDescriptor)
class TcpRelayListener:
    """A TCP allocation's relayed transport address (implements ``turn.allocation.Relay``)."""

    def __init__(self, driver: Any, sock: socket.socket, allocation: Any, address: tuple[str, int]) -> None:
        self.driver = driver
        self.reactor = driver.reactor
        self.sock = sock
        self.allocation = allocation
        self.address = address
        self._fd = sock.fileno()
        self._family = sock.family

    def sendto(self, data: bytes, peer: Any) -> int:
        """A TCP allocation sends no datagrams (Send indications to it are dropped as ``send_error``)."""
        raise OSError(errno.EPROTOTYPE, "a TCP allocation relays over TCP connections (RFC 6062)")

    def close(self) -> None:
        if self._fd >= 0:
            self.reactor.removeReader(self)
            self._fd = -1
            self.sock.close()

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        driver = self.driver
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ECONNABORTED, EMFILE, ...: the peer may try again
            try:
                if driver.stream_connections >= driver.max_stream_connections:
                    driver.engine.counters.quota_hit("tcp_connections")
                    continue
                self.reactor.adoptStreamConnection(conn.fileno(), self._family,
                                                   _OneProtocol(TcpPeerProtocol(driver, None, self.allocation)))
            finally:
                conn.close()

    def connectionLost(self, reason: Any) -> None:
        self.close()

    def logPrefix(self) -> str:
        return "TurnTcpRelay"


@implementer(IWriteDescriptor)
class TcpConnector:
    """A Connect in progress (a ``PeerLink`` until the connection is up; then the protocol is)."""

    def __init__(self, driver: Any, sock: socket.socket, connection: TcpConnection) -> None:
        self.driver = driver
        self.sock = sock
        self.connection = connection
        self._fd = sock.fileno()

    def start(self, peer: tuple[str, int]) -> None:
        code = self.sock.connect_ex(peer)
        if code in (0, errno.EINPROGRESS):
            self.driver.reactor.addWriter(self)
        else:
            # The answer (447) goes after the Connect handler has returned, never from inside it.
            self.driver.reactor.callLater(0, self._done, False)

    def fileno(self) -> int:
        return self._fd

    def doWrite(self) -> None:
        self.driver.reactor.removeWriter(self)
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._done(False)
            return
        protocol = TcpPeerProtocol(self.driver, self.connection)
        self.connection.link = protocol
        try:
            self.driver.reactor.adoptStreamConnection(self._fd, self.sock.family, _OneProtocol(protocol))
        finally:
            self._fd = -1
            self.sock.close()
        self.driver.engine.tcp_connect_result(self.connection, True, now=self.driver.reactor.seconds())
        self.driver.rearm()

    def _done(self, ok: bool) -> None:
        if self._fd >= 0:
            self._fd = -1
            self.sock.close()
            self.driver.engine.tcp_connect_result(self.connection, ok, now=self.driver.reactor.seconds())
            self.driver.rearm()

    # -- PeerLink (before the connection is up) ----------------------------

    def close(self) -> None:
        if self._fd >= 0:
            self.driver.reactor.removeWriter(self)
            self._fd = -1
            self.sock.close()

    def write(self, data: bytes) -> None:  # nothing is written before ConnectionBind
        pass

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        self._done(False)

    def logPrefix(self) -> str:
        return "TurnTcpConnect"


def open_tcp_relay(driver: Any, host: str, port: int, allocation: Any) -> TcpRelayListener | None:
    """Listen on ``host:port`` for a TCP allocation; None if the port is taken."""
    try:
        sock = _stream_socket(host, port)
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        if e.errno in _REFUSED:
            return None
        raise
    listener = TcpRelayListener(driver, sock, allocation, (host, port))
    driver.reactor.addReader(listener)
    return listener


def connect_tcp(driver: Any, relay: TcpRelayListener, peer: tuple[str, int],
                connection: TcpConnection) -> TcpConnector | None:
    """Start connecting from ``relay``'s address to ``peer``; None at ``max_tcp_connections`` or if the
    address cannot be bound."""
    if driver.stream_connections >= driver.max_stream_connections:
        return None
    try:
        sock = _stream_socket(*relay.address)
    except OSError:
        return None
    connector = TcpConnector(driver, sock, connection)
    connector.start(peer)
    return connector
