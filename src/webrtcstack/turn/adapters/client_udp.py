# -*- test-case-name: tests.integration.test_turn_sockets -*-
"""TURN (and STUN) over UDP: a listener socket read by a lean ``IReadDescriptor``.

``doRead`` drains the socket (bounded per wake-up).  ChannelData and plain
Send indications go straight to the engine's :class:`FastPath` (one dict
lookup and one ``sendto``; see ../STYLE.md and turn/fastpath.py), the same
code the engine runs for them; every other datagram goes to
:meth:`TurnDriver.handle_message` (STUN Binding, TURN requests); malformed
ones are dropped, counted and (rate limited) logged.

Replies to requests are written after the wake-up's reads, at most
:data:`REPLIES_PER_FLUSH` at a time, and the engine's timer is re-armed once
per wake-up.  Under load (a queue of requests) that sends the replies back to
back, which wakes each client once rather than per reply: on loopback that
wake-up cost more CPU than the whole request.  A lone request is answered at
once, as before: its wake-up reads one datagram.

IPv6 sources arrive as ``(host, port, flowinfo, scope_id)``; the engine sees
``(host, port)`` with any zone dropped and ``::ffff:a.b.c.d`` unmapped, while
replies go to the full 4-tuple so a link-local scope survives.  An exception
while handling one datagram is counted in :attr:`TurnUdpListener.failures`
and logged at most once per interval: it must neither stop the listener nor
log per packet.
"""

from __future__ import annotations

import socket
from typing import Any

from zope.interface import implementer
from twisted.application import service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger

from webrtcstack.config import Endpoint
from webrtcstack.sockets import ListenFailed, ListenerService, make_socket
from webrtcstack.stun.attributes import normalize_host
from webrtcstack.stun.errors import StunDecodeError
from webrtcstack.turn.adapters._ratelimit import RateLimitedLog
from webrtcstack.turn.five_tuple import Transport

__all__ = ["TurnUdpListener", "TurnUdpService"]

log = Logger()
READS_PER_WAKEUP = 128
#: Replies held before they are sent (bounds the delay a reply waits for the ones before it).
REPLIES_PER_FLUSH = 32
LISTENER_BUFFER_BYTES = 4 << 20
_UDP = Transport.UDP


def set_buffers(sock: socket.socket, size: int) -> None:
    """Large socket buffers absorb bursts; ``*FORCE`` passes ``rmem_max`` when we may (CAP_NET_ADMIN)."""
    for force, plain in ((getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF),
                         (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
            except OSError:
                pass


def _udp_sender(sendto: Any, addr: tuple[Any, ...], counters: Any) -> Any:
    """A ``to_client`` callable for one UDP client address.

    The bound values are default arguments rather than closure cells, and
    ``sendto`` is the listener's one bound method: every allocation keeps
    its sender, so this is two objects for the garbage collector to track
    (the function and its defaults) instead of five (the function, three
    cells and a bound method), and the call reads locals, not cells.
    """

    def send(data: bytes, _sendto: Any = sendto, _addr: tuple[Any, ...] = addr, _counters: Any = counters) -> None:
        try:
            _sendto(data, _addr)
        except OSError:
            _counters.drop("send_error")

    return send


def ipv6_source(addr: tuple[Any, ...]) -> tuple[str, int]:
    """``(host, port)`` of an IPv6 socket address: zone dropped, ``::ffff:a.b.c.d`` unmapped."""
    host = addr[0]
    if "%" in host or host.startswith("::ffff:"):
        host = normalize_host(host)
    return host, addr[1]


@implementer(IReadDescriptor)
class TurnUdpListener:
    """One bound UDP listener socket feeding the driver.

    :ivar failures: datagrams whose handling raised an unexpected exception.
    """

    def __init__(self, driver: Any, sock: socket.socket, *, log_interval_s: float = 10.0,
                 stun_only: bool = False) -> None:
        self.driver = driver
        self.engine = driver.engine
        self.sock = sock
        self.server: tuple[str, int] = sock.getsockname()[:2]
        #: an RFC 5780 alternate-port socket: STUN Binding only, everything else dropped
        self.stun_only = stun_only
        #: ``[turn] nat_discovery``: the driver's :class:`~webrtcstack.stun.discovery.Discovery` if this
        #: socket is one of its four addresses, else None
        discovery = getattr(driver, "discovery", None)
        self.discovery = discovery if discovery is not None and discovery.knows(self.server) else None
        if self.discovery is not None:
            driver.discovery_senders[(normalize_host(self.server[0]), self.server[1])] = sock.sendto
        self._fd = sock.fileno()
        self._v6 = sock.family == socket.AF_INET6
        self._senders: dict[tuple[str, int], Any] = {}
        self._sendto = sock.sendto
        self.failures = 0
        self._failure_log = RateLimitedLog(log, driver.reactor, log_interval_s)

    def sender_for(self, addr: tuple[str, int], reply_to: tuple[Any, ...] | None = None) -> Any:
        """The cached ``to_client`` callable for ``addr`` (bounded cache).

        :param reply_to: the socket address to send to, if not ``addr``
            itself (an IPv6 4-tuple).
        """
        send = self._senders.get(addr)
        if send is None:
            if len(self._senders) > 65536:
                self._senders.clear()
            send = self._senders[addr] = _udp_sender(self._sendto, reply_to or addr, self.engine.counters)
        return send

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        replies: list[tuple[bytes, Any]] = []
        try:
            handled = self._read(replies)
        finally:
            if replies:
                self._flush(replies)
        if handled:
            self.driver.rearm()

    def _flush(self, replies: list[tuple[bytes, Any]]) -> None:
        sendto = self.sock.sendto
        for reply, to in replies:
            try:
                sendto(reply, to)
            except OSError:
                self.engine.counters.drop("send_error")
        replies.clear()

    def _read(self, replies: list[tuple[bytes, Any]]) -> bool:
        """Read what is queued (bounded); True if any datagram went to the driver."""
        recvfrom = self.sock.recvfrom
        # The fast path (STYLE.md: the data fast path is a table, not a call chain): ChannelData and
        # plain Send indications go to the engine's FastPath, the same code the engine itself runs.
        fast = self.engine.fast_path
        channel_data = fast.channel_data
        send_indication = fast.send_indication
        handle = self.driver.handle_message
        binding = self.engine.binding.handle  # replaced when SOFTWARE changes: read per wake-up
        server = self.server
        v6 = self._v6
        discovery = self.discovery
        stun_only = self.stun_only
        now = self.driver.reactor.seconds()
        handled = False
        for _ in range(READS_PER_WAKEUP):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return handled
            except OSError:
                return handled
            full = addr
            if v6:
                addr = ipv6_source(addr)
            five_tuple = (_UDP, addr, server)
            first = data[0] if data else 0
            # The two fast paths first, unchanged. On an RFC 5780 alternate-port socket no allocation can
            # exist, so ChannelData there is dropped as no_channel and a Send indication falls through.
            if 0x40 <= first < 0x80:  # ChannelData (RFC 8656 §12.4)
                channel_data(five_tuple, data, now)
                continue
            if first == 0 and data[1:2] == b"\x16" and send_indication(five_tuple, data, now):
                continue
            if discovery is not None and data[:2] == b"\x00\x01":  # RFC 5780: the answer may leave elsewhere
                self._discover(data, addr, five_tuple)
                continue
            if stun_only:
                self.engine.counters.drop("stun_only")
                continue
            try:
                if first == 0 and data[1:2] == b"\x01":
                    # A Binding request: the engine's one handler (the engine would send it there too),
                    # called without a sender for the client or a timer re-arm, as it changes no allocation.
                    reply = binding(data, addr, "udp")
                else:
                    handled = True
                    reply = handle(five_tuple, data, self.sender_for(addr, full), now)
            except StunDecodeError as e:
                self.driver.malformed(five_tuple, e)
                continue
            except Exception as e:  # a bug must not stop the listener, nor log per packet
                self.failures += 1
                self._failure_log.warn("STUN/TURN udp: error handling a datagram from {source}: {error!r}",
                                       source=addr, error=e)
                continue
            if reply is not None:
                replies.append((reply, full))
                if len(replies) >= REPLIES_PER_FLUSH:
                    self._flush(replies)
        return handled

    def _discover(self, data: bytes, addr: tuple[str, int], five_tuple: Any) -> None:
        """An RFC 5780 Binding: answered from the address CHANGE-REQUEST picks, to the port RESPONSE-PORT names."""
        discovery = self.discovery
        assert discovery is not None
        discovery.binding = self.engine.binding  # the engine's one handler (replaced when SOFTWARE changes)
        try:
            answer = discovery.answer(data, addr, self.server)
        except StunDecodeError as e:
            self.driver.malformed(five_tuple, e)
            return
        if answer is None:
            return
        sendto = self.driver.discovery_senders.get(answer.origin)
        if sendto is None:  # that socket is not bound (stopping): nothing rather than the wrong origin
            self.engine.counters.drop("send_error")
            return
        try:
            sendto(answer.reply, answer.to)
        except OSError:
            self.engine.counters.drop("send_error")

    def close(self) -> None:
        if self._fd >= 0:
            self.driver.reactor.removeReader(self)
            self._fd = -1
            self.sock.close()
            if self.discovery is not None:
                self.driver.discovery_senders.pop((normalize_host(self.server[0]), self.server[1]), None)

    def connectionLost(self, reason: Any) -> None:
        self.close()

    def logPrefix(self) -> str:
        return "TurnUdp"


class _BoundUdp:
    """What ``ListenerService.port`` offers callers: ``getHost`` and ``stopListening``."""

    def __init__(self, listener: TurnUdpListener) -> None:
        self.listener = listener

    def getHost(self) -> IPv4Address | IPv6Address:
        host, port = self.listener.server
        return IPv6Address("UDP", host, port) if ":" in host else IPv4Address("UDP", host, port)

    def stopListening(self) -> None:
        self.listener.close()


class TurnUdpService(ListenerService):
    """Binds one UDP listener on start, closes it on stop (a ``ListenerService`` of kind udp)."""

    def __init__(self, driver: Any, endpoint: Endpoint, *, reuse_port: bool = False, stun_only: bool = False) -> None:
        ListenerService.__init__(self, driver.reactor, "udp", endpoint, None,
                                 what="STUN (RFC 5780 alternate port)" if stun_only else "STUN/TURN",
                                 reuse_port=reuse_port)
        self.driver = driver
        self.stun_only = stun_only
        self.listener: TurnUdpListener | None = None

    def startService(self) -> None:
        try:
            sock = make_socket(socket.SOCK_DGRAM, self.endpoint.host, self.endpoint.port, reuse_port=self.reuse_port)
        except OSError as e:
            raise ListenFailed(self.what, self.kind, self.endpoint, e) from None
        set_buffers(sock, LISTENER_BUFFER_BYTES)
        self.listener = TurnUdpListener(self.driver, sock, stun_only=self.stun_only)
        self.driver.reactor.addReader(self.listener)
        self.port = _BoundUdp(self.listener)  # type: ignore[assignment]
        service.Service.startService(self)
        log.info("{what} listening on udp {address}", what=self.what, address=str(Endpoint(*self.listener.server)))

    def bound_port(self) -> int:
        """The port actually bound (after start)."""
        assert self.listener is not None
        return self.listener.server[1]

    def stopService(self) -> None:
        service.Service.stopService(self)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.port = None
