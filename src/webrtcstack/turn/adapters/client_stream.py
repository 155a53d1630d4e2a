# -*- test-case-name: tests.integration.test_turn_sockets -*-
"""TURN (and STUN) over a byte stream: TCP now, TLS by wrapping the factory.

The protocol only needs an ``ITransport`` (``write``, ``getPeer``,
``getHost``, ``loseConnection``), so TLS is ``TLSMemoryBIOFactory`` around
:class:`TurnStreamFactory` with ``transport=Transport.TLS``; nothing here
changes.  Frames come from :class:`~webrtcstack.stun.framing.StreamFramer`
(accepting the unpadded ChannelData of old clients unless the factory says
otherwise);
closing the connection ends its allocation (RFC 8656 §7: the allocation lives
as long as the connection).

The stream cannot be trusted once it holds something that is not ours, so
these close the connection (counted in ``dropped``, logged at most once per
interval per listener, never per packet):

* a framing error (:class:`~webrtcstack.stun.errors.StunDecodeError` from the
  framer): a frame larger than ``max_frame_bytes``, a STUN length that is not
  a multiple of 4, or a first byte that is neither STUN nor ChannelData;
* a STUN frame that does not decode (RFC 8489 §6.2.2: a stream cannot be
  resynchronised);
* ChannelData before the connection has an allocation: no channel can exist
  yet, so it is garbage (an HTTP request line, for instance, starts with a
  byte in the ChannelData range); the first byte is enough to tell.

A connection with no allocation that stays silent for ``idle_timeout_s`` is
closed.  The check is lazy: each chunk only stores the time, and the one
timer per connection re-arms itself for what is left when it fires.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from webrtcstack.stun.attributes import normalize_host
from webrtcstack.stun.errors import StunDecodeError
from webrtcstack.stun.framing import StreamFramer
from webrtcstack.turn.adapters._ratelimit import RateLimitedLog
from webrtcstack.turn.five_tuple import FiveTuple, Transport

__all__ = ["TurnStreamProtocol", "TurnStreamFactory", "TurnTcpServer"]

log = Logger()


class TurnTcpServer(tcp.Server):
    """A TURN client's TCP connection: Twisted's own transport, under a class of its own.

    The ``[turn] listen`` TCP ports make their connections with it, so the
    epoll reactor can serve them without the legacy log context
    (:mod:`webrtcstack.turn.adapters.dispatch`), as it serves the UDP
    listeners, while HTTP and WebSocket connections keep Twisted's ``Server``.

    :meth:`write` sends at once when nothing is waiting to be sent. Twisted's
    own write always buffers and asks the reactor to watch for writability,
    which costs two ``epoll_ctl`` calls and a pass through ``doWrite`` per
    wake-up of every connection a peer's datagram goes out on; a relayed
    packet is one ``send``. What the socket does not take, and everything
    while something waits, goes through Twisted's buffer as before, so the
    order of the bytes, flow control (producers) and the closing rules are
    Twisted's.
    """

    def write(self, data: bytes) -> None:
        if self.dataBuffer or self._tempDataBuffer or self.TLS or self.disconnecting or not self.connected \
                or self._writeDisconnected or not isinstance(data, bytes) or not data:
            tcp.Server.write(self, data)
            return
        try:
            sent = self.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # The connection failed: Twisted's buffered write meets the same error in doWrite and
            # closes the connection its own way.
            sent = 0
        if sent < len(data):
            tcp.Server.write(self, data[sent:])


class TurnStreamProtocol(Protocol):
    """One client connection."""

    factory: TurnStreamFactory

    def __init__(self) -> None:
        self.five_tuple: FiveTuple | None = None
        self.framer: StreamFramer | None = None
        self._counted = False
        self._idle_call: IDelayedCall | None = None
        self._last_activity = 0.0
        #: Set once the connection has had an allocation (ChannelData is then legitimate).
        self._allocated = False
        #: RFC 6062: once this is a client data connection, its peer connection (a byte pipe)
        self.pipe: Any = None
        self._binding = False
        self._pacer: Any = None

    def _no_allocation_yet(self) -> bool:
        if not self._allocated and self.factory.engine.has_allocation(self.five_tuple):
            self._allocated = True
        return not self._allocated

    def connectionMade(self) -> None:
        factory = self.factory
        driver = factory.driver
        if driver.stream_connections >= factory.max_connections:
            factory.refused += 1
            driver.engine.counters.quota_hit("tcp_connections")
            self.transport.abortConnection()
            return
        driver.stream_connections += 1
        self._counted = True
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self.five_tuple = FiveTuple(factory.transport_kind, (normalize_host(peer.host), peer.port),
                                    (normalize_host(host.host), host.port))
        self.framer = StreamFramer(factory.max_frame_bytes,
                                   accept_unpadded_channel_data=factory.accept_unpadded_channel_data,
                                   hold_after_connection_bind=True)
        if factory.idle_timeout_s > 0:
            self._last_activity = driver.reactor.seconds()
            self._idle_call = driver.reactor.callLater(factory.idle_timeout_s, self._check_idle)

    def dataReceived(self, data: bytes) -> None:
        framer, five_tuple = self.framer, self.five_tuple
        if framer is None or five_tuple is None or not data:
            return
        factory = self.factory
        driver = factory.driver
        now = driver.reactor.seconds()
        self._last_activity = now
        if self._allocated:
            # The media case, one ChannelData frame per chunk: straight to the fast path the engine would
            # send it to, without the framer's buffer or the request path.
            frame = framer.lone_channel_data(data)
            if frame is not None:
                factory.engine.fast_path.channel_data(five_tuple, frame, now)
                return
        if not framer.buffered and 0x40 <= data[0] < 0x80 and self._no_allocation_yet():
            self._refuse("ChannelData before any allocation")
            return
        try:
            frames = framer.feed(data)
        except StunDecodeError as e:
            factory.engine.counters.drop("framing")
            self._refuse(str(e), abort=True)
            return
        write = self.transport.write
        for frame in frames:
            if 0x40 <= frame[0] < 0x80 and self._no_allocation_yet():
                self._refuse("ChannelData before any allocation")
                return
            if not driver.handle_client(five_tuple, frame, write, now):
                self._refuse("malformed STUN message")
                return
        if framer.held:  # the last frame was a ConnectionBind (RFC 6062 §5.4)
            self._connection_bind_answered(five_tuple)

    # -- RFC 6062 client data connection ---------------------------------------

    def _connection_bind_answered(self, five_tuple: FiveTuple) -> None:
        """The framer stopped after a ConnectionBind: a pipe now if it succeeded, else framing goes on.

        What followed a failed bind is fed again through :meth:`dataReceived`
        (which may stop at another ConnectionBind: this loop, not recursion,
        takes each in turn; the hot path above pays one attribute test).
        """
        if self._binding:
            return  # fed again from the loop below, which goes on
        framer = self.framer
        self._binding = True
        try:
            while framer is not None and framer is self.framer and framer.held:  # (None: refused meanwhile)
                connection = self.factory.engine.take_tcp_data_connection(five_tuple, self)
                if connection is not None:
                    self._become_pipe(connection, framer.detach())
                    return
                rest = framer.resume()
                if rest:
                    self.dataReceived(rest)
        finally:
            self._binding = False

    def _become_pipe(self, connection: Any, rest: bytes) -> None:
        """ConnectionBind succeeded: from now on this connection is the peer's bytes, both ways."""
        self.framer = None
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        self.pipe = connection
        self.dataReceived = self._pipe_received  # type: ignore[method-assign]
        now = self.factory.driver.reactor.seconds()
        held = connection.release_held()
        if held:
            self.transport.write(held)
            connection.relayed(len(held), False, now)
        peer = connection.link
        peer.bind(self.transport)
        if rest:
            self._to_peer(connection, rest)

    def _pipe_received(self, data: bytes) -> None:
        """``dataReceived`` once this is a client data connection: the bytes go to the peer as they are."""
        connection = self.pipe
        if connection is not None:
            self._to_peer(connection, data)

    def _to_peer(self, connection: Any, data: bytes) -> None:
        link = connection.link
        if link is None:
            return
        link.write(data)
        reactor = self.factory.driver.reactor
        delay = connection.relayed(len(data), True, reactor.seconds())
        if delay:
            if self._pacer is None:
                from webrtcstack.turn.adapters.tcp_relay import Pacer

                self._pacer = Pacer(reactor, self.transport)
            self._pacer.pause_for(delay)

    def write(self, data: bytes) -> None:
        """PeerLink: bytes for the client."""
        self.transport.write(data)

    def close(self) -> None:
        """PeerLink: the peer side ended."""
        self.transport.loseConnection()

    def pause(self) -> None:
        self.transport.pauseProducing()

    def resume(self) -> None:
        self.transport.resumeProducing()

    def _refuse(self, why: str, abort: bool = False) -> None:
        """Close a connection that sent something not ours; count it, log it rate limited."""
        factory = self.factory
        factory.dropped += 1
        factory.close_log.warn("STUN/TURN {transport}: closing the connection from {peer}: {why}",
                               transport=factory.transport_kind.name.lower(),
                               peer=self.five_tuple.client if self.five_tuple else None, why=why)
        self.framer = None
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def _check_idle(self) -> None:
        self._idle_call = None
        factory = self.factory
        if self.framer is None or self.five_tuple is None:
            return
        reactor = factory.driver.reactor
        due = self._last_activity + factory.idle_timeout_s
        if factory.engine.has_allocation(self.five_tuple):
            # An allocation keeps the connection (it ends with its allocation, or Refresh).
            due = reactor.seconds() + factory.idle_timeout_s
        if due > reactor.seconds():
            self._idle_call = reactor.callLater(due - reactor.seconds(), self._check_idle)
            return
        factory.idle_closed += 1
        self.framer = None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        if self._pacer is not None:
            self._pacer.cancel()
        self.pipe = None
        if self._counted:
            self.factory.driver.stream_connections -= 1
            self._counted = False
        if self.five_tuple is not None:
            self.factory.driver.connection_lost(self.five_tuple)
        self.framer = None


class TurnStreamFactory(Factory):
    """Builds :class:`TurnStreamProtocol` for one listener.

    :param transport_kind: ``Transport.TCP`` or ``Transport.TLS``.
    :param idle_timeout_s: close a connection without an allocation silent this long (0: never).
    :param accept_unpadded_channel_data: accept ChannelData sent without its
        stream padding, as some old clients do (``False``: strict RFC 8656 §12.5).
    :ivar dropped: connections closed for sending something not ours.
    :ivar idle_closed: connections closed for being idle.
    """

    protocol = TurnStreamProtocol
    noisy = False

    def __init__(self, driver: Any, *, transport_kind: Transport = Transport.TCP, max_connections: int = 10000,
                 max_frame_bytes: int = 65540, idle_timeout_s: float = 300.0, log_interval_s: float = 10.0,
                 accept_unpadded_channel_data: bool = True) -> None:
        self.driver = driver
        self.engine = driver.engine
        self.transport_kind = transport_kind
        self.max_connections = max_connections
        self.max_frame_bytes = max_frame_bytes
        self.accept_unpadded_channel_data = accept_unpadded_channel_data
        self.idle_timeout_s = idle_timeout_s
        self.refused = 0
        self.dropped = 0
        self.idle_closed = 0
        self.close_log = RateLimitedLog(log, driver.reactor, log_interval_s)
