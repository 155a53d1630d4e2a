"""Listening sockets as Twisted services (shell code).

Why not ``internet.UDPServer``/``TCPServer``: Linux binds ``[::]`` dual-stack
by default, so ``0.0.0.0:3478`` and ``[::]:3478`` in one config would clash.
We make IPv6 sockets ``IPV6_V6ONLY`` ourselves and hand them to the reactor
with ``adoptDatagramPort`` / ``adoptStreamPort``, so each family gets its own
socket, as coturn does.

Every service binds in ``startService`` and closes its port in
``stopService`` (returning the Deferred the reactor gives), so a stopped stack
leaves no port open.
"""

from __future__ import annotations

import errno
import resource
import socket
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.logger import Logger

from webrtcstack.clients import is_trusted
from webrtcstack.config import Endpoint

log = Logger()


def make_socket(kind: int, host: str, port: int, *, backlog: int = 1024, reuse_port: bool = False) -> socket.socket:
    """Create, configure and bind a non-blocking socket (listening, if stream).

    :param kind: ``socket.SOCK_DGRAM`` or ``socket.SOCK_STREAM``.
    :param reuse_port: set ``SO_REUSEPORT`` before binding, so several
        processes (``[turn] workers``) bind the same address and the kernel
        spreads clients between them by a hash of the 4-tuple.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def listen_udp(reactor: Any, host: str, port: int, protocol: DatagramProtocol,
               max_packet_size: int = 65535) -> IListeningPort:
    """Bind a UDP socket (v6-only for IPv6 hosts) and attach ``protocol`` to it."""
    sock = make_socket(socket.SOCK_DGRAM, host, port)
    try:
        listening = reactor.adoptDatagramPort(sock.fileno(), sock.family, protocol, max_packet_size)
    finally:
        # The reactor dup()s the descriptor; our copy must go.
        sock.close()
    return listening


def listen_tcp(reactor: Any, host: str, port: int, factory: Factory, backlog: int = 1024, *,
               reuse_port: bool = False, transport: type | None = None) -> IListeningPort:
    """Bind a listening TCP socket (v6-only for IPv6 hosts) serving ``factory``.

    :param transport: a subclass of Twisted's ``tcp.Server`` for the accepted
        connections (the port's ``transport`` class), or None for Twisted's own.
    """
    sock = make_socket(socket.SOCK_STREAM, host, port, backlog=backlog, reuse_port=reuse_port)
    try:
        listening = reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
    finally:
        sock.close()
    if transport is not None:
        listening.transport = transport  # type: ignore[attr-defined]
    return listening


#: the config key behind each kind of listener, for errors
LISTEN_KEYS = {"STUN/TURN": "[turn] listen", "turns": "[turn] tls_listen", "http": "[http] listen",
               "https": "[http] tls_listen", "https+turns": "[http] tls_listen and [turn] tls_listen",
               "https-redirect": "[http] redirect_listen", "collider": "[signaling] listen",
               "metrics": "[metrics] listen", "STUN (RFC 5780 alternate port)": "[turn] nat_discovery_port"}


class StartFailed(Exception):
    """Something the config requires cannot be done here: one line saying what and why (exit status 2).

    A service with a ``preflight()`` raises it before any listener binds.
    """


class ListenFailed(StartFailed):
    """A required listener could not bind: one line naming the address, the config key and the cause."""

    def __init__(self, what: str, kind: str, endpoint: Endpoint, error: OSError) -> None:
        key = LISTEN_KEYS.get(what, what)
        text = f"cannot listen on {kind} {endpoint} ({key}): {error.strerror or error}"
        if error.errno == errno.EADDRINUSE:
            tool = "ss -lupn" if kind == "udp" else "ss -ltpn"
            text += (f"; another process holds that port (find it with: {tool} 'sport = :{endpoint.port}'; "
                     "a coturn or a second webrtcstack still running?), or change the port")
        elif error.errno == errno.EACCES:
            text += "; ports below 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit grants it)"
        elif error.errno == errno.EADDRNOTAVAIL:
            text += "; no interface of this machine has that address"
        super().__init__(text)


class ListenerService(service.Service):
    """One listener: binds on start, closes on stop.

    :param kind: ``"udp"``, ``"tcp"`` or ``"tls"`` (TLS is TCP with a context
        factory wrapped around ``target`` by the caller).
    :param target: a DatagramProtocol for UDP, a Factory for TCP.
    """

    def __init__(self, reactor: Any, kind: str, endpoint: Endpoint, target: Any, *, what: str = "",
                 optional: bool = False, reuse_port: bool = False, transport: type | None = None) -> None:
        self.reactor = reactor
        self.reuse_port = reuse_port
        #: TCP: the accepted connections' transport class (see :func:`listen_tcp`)
        self.transport = transport
        self.kind = kind
        self.endpoint = endpoint
        self.target = target
        self.what = what
        self.optional = optional
        self.port: IListeningPort | None = None
        self.setName(f"{what or kind} {kind} {endpoint}")

    def preflight(self) -> None:
        """Bind a throw-away socket like the real one and close it, so a port in use is found before any binds.

        :raises ListenFailed: the address cannot be bound (an optional listener is not checked).
        """
        if self.optional or self.endpoint.port == 0:
            return
        kind = socket.SOCK_DGRAM if self.kind == "udp" else socket.SOCK_STREAM
        try:
            make_socket(kind, self.endpoint.host, self.endpoint.port, reuse_port=self.reuse_port).close()
        except OSError as e:
            raise ListenFailed(self.what, self.kind, self.endpoint, e) from None

    def startService(self) -> None:
        # Binding errors propagate: a port in use stops the start with a clear error.
        # An optional listener (the metrics one) logs the error and the stack serves on.
        try:
            if self.kind == "udp":
                self.port = listen_udp(self.reactor, self.endpoint.host, self.endpoint.port, self.target)
            else:
                self.port = listen_tcp(self.reactor, self.endpoint.host, self.endpoint.port, self.target,
                                       reuse_port=self.reuse_port, transport=self.transport)
        except OSError as e:
            if not self.optional:
                raise ListenFailed(self.what, self.kind, self.endpoint, e) from None
            log.error("{what} cannot listen on {kind} {endpoint}: {error}; serving without it",
                      what=self.what, kind=self.kind, endpoint=str(self.endpoint), error=e.strerror or e)
            #: set when an optional listener could not bind (it is left out of the ready line)
            self.failed = True
            service.Service.startService(self)
            return
        service.Service.startService(self)
        log.info("{what} listening on {kind} {address}", what=self.what, kind=self.kind, address=self.address_text())

    def address_text(self) -> str:
        """The bound address as host:port (useful with port 0)."""
        if self.port is None:
            return str(self.endpoint)
        host = self.port.getHost()
        return str(Endpoint(host.host, host.port))

    def bound_port(self) -> int:
        """The port actually bound (after start)."""
        assert self.port is not None
        return int(self.port.getHost().port)

    def stopService(self) -> defer.Deferred[None] | None:
        service.Service.stopService(self)
        port, self.port = self.port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return None


class ConnectionBudget:
    """A count of open connections shared by several listeners, with a limit in all and per address.

    :param limit: connections at once, all addresses together.
    :param per_address: connections at once from one client address (0: no
        such limit), so one address cannot take every slot.
    """

    def __init__(self, limit: int, per_address: int = 0, unlimited: tuple[Any, ...] = ()) -> None:
        self.limit = limit
        self.per_address = per_address
        #: networks (``[http] trusted_proxies``) whose connections carry many clients: no per-address limit
        self.unlimited = unlimited
        self.open = 0
        self.refused = 0
        #: refused because their address had ``per_address`` open already
        self.refused_per_address = 0
        self.by_address: dict[str, int] = {}

    @property
    def saturated(self) -> bool:
        """Whether the next connection would be refused for the limit in all."""
        return self.open >= self.limit

    def admit(self, host: str) -> bool:
        """Whether a new connection from ``host`` may open (counts a refusal if not)."""
        if self.open >= self.limit:
            self.refused += 1
            return False
        if self.per_address and self.by_address.get(host, 0) >= self.per_address and not self._unlimited(host):
            self.refused += 1
            self.refused_per_address += 1
            return False
        return True

    def _unlimited(self, host: str) -> bool:
        return bool(self.unlimited) and is_trusted(host, self.unlimited)

    def opened(self, host: str) -> None:
        """A connection from ``host`` is open."""
        self.open += 1
        self.by_address[host] = self.by_address.get(host, 0) + 1

    def closed(self, host: str) -> None:
        """A connection from ``host`` has closed."""
        self.open -= 1
        left = self.by_address.get(host, 1) - 1
        if left > 0:
            self.by_address[host] = left
        else:
            self.by_address.pop(host, None)


class LimitedFactory(WrappingFactory):
    """Wraps a stream factory; a connection beyond the budget is closed at once.

    Put it outermost (around a TLS factory, not inside it) so a refused
    connection costs no handshake.  Autobahn's WebSocket upgrade knows
    ProtocolWrapper transports, so WebSockets behind it work as usual.
    """

    protocol = ProtocolWrapper

    def __init__(self, wrapped: Factory, budget: ConnectionBudget) -> None:
        super().__init__(wrapped)
        self.budget = budget
        # The wrapped factory logs its own start/stop; ours would only repeat it.
        self.noisy = False

    def buildProtocol(self, addr: Any) -> Protocol | None:
        host = str(getattr(addr, "host", ""))
        if not self.budget.admit(host):
            return None
        p = super().buildProtocol(addr)
        if p is not None:
            p._budget_host = host  # type: ignore[attr-defined]
        return p

    def registerProtocol(self, p: Protocol) -> None:
        super().registerProtocol(p)
        self.budget.opened(getattr(p, "_budget_host", ""))

    def unregisterProtocol(self, p: Protocol) -> None:
        super().unregisterProtocol(p)
        self.budget.closed(getattr(p, "_budget_host", ""))


def raise_open_files_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE toward ``wanted`` (capped by the hard limit).

    :returns: the (soft, hard) limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warn("could not raise the open files limit to {target}: {error}", target=target, error=e)
    return soft, hard
