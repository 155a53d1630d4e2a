"""The Twisted shell around the signaling hub: the WebSocket protocol and factory.

:class:`HubRunner` owns the hub, reads the clock, keeps the hub's one
re-armed timer and carries out its effects (send a frame, close a socket).
:class:`SignalingServerFactory` makes a :class:`SignalingServerProtocol`
per socket; each feeds its frames to a sans-IO
:class:`~webrtcstack.signaling.hub.SignalingSession`.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, tcp
from twisted.protocols.policies import ProtocolWrapper
from twisted.logger import Logger

from webrtcstack.deadline import DeadlineTimer
from webrtcstack.signaling.frames import read_text_frames, text_frame
from webrtcstack.signaling.hub import Deliver, Disconnect, Effect, Reply, SignalingHub, SignalingSession

__all__ = ["HubRunner", "SignalingServerProtocol", "SignalingServerFactory", "REGISTER_TIMEOUT_CODE",
           "SLOW_READER_CODE", "TOO_MANY_PINGS_CODE"]

log = Logger()

#: the close code of a socket that did not register within
#: ``[signaling] register_timeout_seconds`` (4000-4999 are the
#: application's own; Autobahn lets a server send no 1008)
REGISTER_TIMEOUT_CODE = 4008
#: the close code of a socket whose client does not read what it is sent
SLOW_READER_CODE = 4009
#: the close code of a socket that pings faster than its message rate
TOO_MANY_PINGS_CODE = 4029


class _SendWatch:
    """The transport's push-producer hooks: tells whether its write buffer is full (a slow reader)."""

    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = False


#: a timer this late (seconds) means the process was stalled (SIGSTOP, swapping, a long GC)
STALL_S = 1.0
#: how often the runner checks for stalls
HEARTBEAT_S = 0.5
#: how long a timer found late is put off, so the reactor reads the I/O that waited first
PUT_OFF_S = 0.01


class HubRunner:
    """Drives a :class:`SignalingHub`: time, the one timer, effects.

    After a stall, the reactor runs every overdue timer before it reads the
    sockets, so a register timeout would fire before the ``register`` frame
    that arrived in time, and a client's frames would arrive as one burst.
    So a timer found late by more than :data:`STALL_S` is put off by
    :data:`PUT_OFF_S` (the reactor reads the waiting I/O meanwhile), and each stall is
    noted (:attr:`stall`, by a heartbeat or by the first frame read after
    it, whichever runs first), its length credited once to every socket's
    rate bucket.

    :param reactor: gives ``seconds()`` and ``callLater`` (a ``task.Clock``
        in tests).
    """

    def __init__(self, hub: SignalingHub, reactor: Any) -> None:
        self.hub = hub
        #: the factory whose sockets :meth:`stop` closes (set by build_web)
        self.factory: SignalingServerFactory | None = None
        #: the shared rooms (:class:`webrtcstack.cluster.rooms.ClusterRooms`) with ``[redis]``, else None
        self.cluster: Any = None
        self.reactor = reactor
        self.started_at = reactor.seconds()
        #: (room_id, client_id) -> the protocol registered as that client
        self.sockets: dict[tuple[str, str], SignalingServerProtocol] = {}
        #: the one timer, at the hub's next deadline
        self.timer = DeadlineTimer(reactor, self._fire)
        self._put_off = False
        #: (a number that changes with each stall, its length in seconds)
        self.stall: tuple[int, float] = (0, 0.0)
        self._beat_due = self.now() + HEARTBEAT_S
        self._beat: Any = reactor.callLater(HEARTBEAT_S, self._heartbeat)
        #: why the service cannot take new work now ("" when it can); set by
        #: the shell when shared state is out of reach (``[redis]``)
        self.unavailable: Callable[[], str] = lambda: ""

    def _heartbeat(self) -> None:
        self.check_stall()
        self._beat_due = self.now() + HEARTBEAT_S
        self._beat = self.reactor.callLater(HEARTBEAT_S, self._heartbeat)

    def check_stall(self, now: float | None = None) -> tuple[int, float]:
        """Note a stall as soon as anything runs after it; the last stall seen.

        The reactor may read the sockets before it runs the overdue
        heartbeat (Python retries an interrupted ``epoll_wait``, so after
        SIGCONT the waiting frames usually come first): every frame asks
        here, so the stall is known before the first frame after it is
        counted against its sender's rate.

        :param now: the reactor's time, when the caller has it already.
        """
        if now is None:
            now = self.now()
        late = now - self._beat_due
        if late > STALL_S:
            self.stall = (self.stall[0] + 1, late + HEARTBEAT_S)
            log.warn("signaling: the process was stalled for {seconds:.1f} s", seconds=late + HEARTBEAT_S)
            self._beat_due = now + HEARTBEAT_S  # the heartbeat's next turn measures from here
        return self.stall

    def late(self, due: float) -> bool:
        """Whether a timer due at ``due`` fires after a stall (see the class docstring)."""
        return self.now() - due > STALL_S

    def now(self) -> float:
        """The reactor's time."""
        return float(self.reactor.seconds())

    def apply(self, effects: Iterable[Effect], origin: SignalingServerProtocol | None = None) -> None:
        """Carry out effects; ``Reply`` goes to ``origin``, the socket that sent the frame."""
        for effect in effects:
            if type(effect) is Deliver:
                proto = self.sockets.get((effect.room_id, effect.client_id))
                if proto is not None:
                    proto.deliver(effect.frame.encode("utf-8"))
            elif type(effect) is Disconnect:
                key = (effect.room_id, effect.client_id)
                if self.sockets.get(key) is effect.conn:
                    del self.sockets[key]
                conn = effect.conn
                if isinstance(conn, SignalingServerProtocol):
                    conn.close_soon()
            elif type(effect) is Reply and origin is not None:
                origin.send_text(effect.frame.encode("utf-8"))
                if effect.close:
                    origin.close_soon()

    def rearm(self) -> None:
        """Point the timer at the hub's next deadline."""
        self.timer.arm(self.hub.next_deadline())

    def _fire(self, deadline: float) -> None:
        if self.late(deadline) and not self._put_off:
            self._put_off = True  # read what waited through the stall first
            self.timer.arm_in(PUT_OFF_S)
            return
        self._put_off = False
        if self.cluster is not None:
            self._fire_cluster()
            return
        self.apply(self.hub.handle_timers(now=self.now()))
        self.rearm()

    def _fire_cluster(self) -> None:
        """Timers with shared rooms: each room with due clients is changed on its shared record."""
        now = self.now()
        for room_id in sorted(self.hub.due_rooms(now=now)):
            d = self.in_room(room_id, lambda room_id=room_id: (None, self.hub.handle_timers(now=now, only_room=room_id)))
            d.addCallback(lambda result: self.apply(result[1]))
            d.addErrback(self._cluster_failed, f"timers of room {room_id}")
        if self.hub.rooms is not None:
            self.hub.rooms.handle_timers(now=now)  # rooms expire in Redis; this only moves the sweep on
        self.rearm()

    def in_room(self, room_id: str, operation: Callable[[], tuple[Any, list[Effect]]],
                speculative: tuple[Callable[[], Any], Callable[[Any], None]] | None = None) -> Any:
        """Run a hub operation on ``room_id``: at once (a fired Deferred) in one process, or on the shared record.

        :param speculative: see :meth:`webrtcstack.cluster.rooms.ClusterRooms.run`.
        """
        if self.cluster is None:
            return defer.succeed(operation())
        return self.cluster.run(room_id, operation, speculative)

    def _cluster_failed(self, failure: Any, what: str) -> None:
        log.warn("cluster: {what} could not be changed: {error}", what=what, error=failure.getErrorMessage())

    def stop(self) -> None:
        """Cancel the timer and drop every socket (the service is stopping)."""
        self.timer.stop()
        if self._beat is not None and self._beat.active():
            self._beat.cancel()
        self._beat = None
        protos = set(self.sockets.values())
        if self.factory is not None:
            protos |= self.factory.open_sockets
        if self.cluster is not None:
            self.cluster.leaving = list(self.sockets.items())  # they leave their rooms' records at stop
        for proto in protos:
            proto.close_soon()
        self.sockets.clear()


class SignalingServerProtocol(WebSocketServerProtocol):
    """One signaling WebSocket (collider's ``/ws``)."""

    factory: SignalingServerFactory
    session: SignalingSession | None = None
    _peer_ip: str | None = None
    _closing = False
    _register_deadline: Any = None
    _register_due = 0.0
    _register_put_off = False
    _send_watch: _SendWatch | None = None
    _unread = 0
    #: the TCP connection under this socket and its socket, for writing at once (see ``_write``); None: TLS
    _raw_transport: Any = None
    _raw_socket: Any = None
    #: the client address the HTTP upgrade request had (``[http] trusted_proxies`` applied), if known
    client_ip: str | None = None

    def onConnect(self, request: Any) -> None:
        # The Origin was checked by SignalingResource before the handshake.
        factory = self.factory
        # The client the HTTP layer saw (behind a trusted proxy: the one it names), else the TCP peer.
        ip = self.client_ip or getattr(self.transport.getPeer(), "host", "?")
        if factory.open_count >= factory.max_connections:
            factory.refused_full += 1
            raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, "Too many WebSocket connections")
        if factory.per_ip.get(ip, 0) >= factory.max_connections_per_ip:
            factory.refused_per_address += 1
            raise ConnectionDeny(429, "Too many WebSocket connections from this address")
        factory.open_count += 1
        factory.per_ip[ip] = factory.per_ip.get(ip, 0) + 1
        factory.open_sockets.add(self)
        self._peer_ip = ip
        return None

    def onOpen(self) -> None:
        runner = self.factory.runner
        self.session = SignalingSession(
            runner.hub, self,
            max_message_bytes=self.factory.max_message_bytes,
            messages_per_second=self.factory.messages_per_second,
            burst=self.factory.message_burst,
            now=runner.now(),
        )
        # Learn when the transport's write buffer is full: Twisted pauses its
        # producer.  The HTTP channel that carried the upgrade is registered
        # there; the socket is ours now.
        transport: Any = self.transport
        self._send_watch = _SendWatch()
        try:
            transport.unregisterProducer()
            transport.registerProducer(self._send_watch, True)
        except (AttributeError, RuntimeError):  # pragma: no cover - a transport without producers
            self._send_watch = None
        raw = transport.transport if isinstance(transport, ProtocolWrapper) else transport
        # Only a plain TCP connection, whose buffer we can see: Twisted keeps it in these two attributes.
        if isinstance(raw, tcp.Connection) and hasattr(raw, "_tempDataBuffer") and hasattr(raw, "dataBuffer"):
            self._raw_transport = raw
            self._raw_socket = raw.socket
        # collider closes a socket that has not registered in time; so do we
        # (with a close frame), and the socket is counted until then.
        self._register_due = runner.now() + runner.hub.register_timeout_s
        self._register_deadline = runner.reactor.callLater(
            runner.hub.register_timeout_s, self._register_expired)

    def deliver(self, payload: bytes) -> None:
        """Send one text frame; close a client that lets more than ``max_send_buffer_bytes`` pile up unread."""
        if self._closing:
            return
        watch = self._send_watch
        if watch is not None and watch.paused:
            self._unread += len(payload)
            if self._unread > self.factory.max_send_buffer_bytes:
                self.factory.slow_readers_closed += 1
                self._closing = True
                self.sendClose(SLOW_READER_CODE, "Client does not read its messages")
                return
        else:
            self._unread = 0
        self.send_text(payload)

    def send_text(self, payload: bytes) -> None:
        """Send one unfragmented text frame (RFC 6455 §5.2), the per-message path.

        The frame (:func:`text_frame`: no mask, no extension, we negotiate
        none) written straight to the transport skips Autobahn's general ``sendMessage`` → ``sendFrame`` →
        ``sendData`` chain, which formats debug-log arguments on every call even
        with debug logging off.  Anything unusual (not open, a fragmented or
        queued send in progress, compression) goes through ``sendMessage``.
        """
        if (self.state != WebSocketProtocol.STATE_OPEN or self.send_queue
                or self.send_state != WebSocketProtocol.SEND_STATE_GROUND or self._perMessageCompress is not None):
            self.sendMessage(payload, False)
            return
        self._write(text_frame(payload))

    def _write(self, data: bytes) -> None:
        """Write ``data``, sending it at once when nothing is waiting before it.

        Twisted's ``write`` only buffers and registers the socket for
        writability, so every forwarded message would cost two ``epoll_ctl``
        calls and a second pass through the reactor before its ``send``.
        When the TCP transport's buffer is empty (the usual case) the bytes go
        out with one ``send`` here; whatever the kernel does not take, and
        everything when anything is buffered, goes through ``write`` as
        before, so order, flow control (``registerProducer``) and error
        handling stay Twisted's.  TLS transports always use ``write``.
        """
        sock = self._raw_socket
        if sock is not None:
            raw = self._raw_transport
            if not raw.dataBuffer and not raw._tempDataBuffer and raw.connected and not raw.disconnecting:
                try:
                    sent = sock.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    sent = 0  # write() below meets the same error and closes the connection Twisted's way
                if sent == len(data):
                    return
                data = data[sent:]
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        """Whole text frames go straight to :meth:`onMessage`; the rest to Autobahn's parser.

        Autobahn's parser is general (fragments, control frames, extensions,
        errors) and costs several calls and objects per frame, plus a debug
        line whose arguments it formats on every read even with debug off.
        When it holds no partial frame or message, the whole, masked, final,
        valid UTF-8 text frames at the front of ``data`` are read by
        :func:`read_text_frames`; whatever follows (a ping, a close, a
        fragment, half a frame, bad bytes) is Autobahn's, from a frame boundary.
        """
        if (self.state == WebSocketProtocol.STATE_OPEN and self.current_frame is None and not self.inside_message
                and not self.data and self._perMessageCompress is None):
            frames = read_text_frames(data, self.maxFramePayloadSize)
            if frames:
                used = 0
                for payload, used in frames:
                    self.onMessage(payload, False)
                    if self.state != WebSocketProtocol.STATE_OPEN:
                        break  # we closed the socket: what follows is Autobahn's to judge
                data = data[used:]
                if not data:
                    return
        self._dataReceived(data)

    def onPing(self, payload: bytes) -> None:
        session = self.session
        runner = self.factory.runner
        now = runner.now()
        if session is not None and not session.handle_ping(now=now, stall=runner.check_stall(now)):
            if not self._closing:
                self._closing = True
                self.sendClose(TOO_MANY_PINGS_CODE, "Too many pings")
            return
        super().onPing(payload)

    def _register_expired(self) -> None:
        runner = self.factory.runner
        if runner.late(self._register_due) and not self._register_put_off:
            self._register_put_off = True  # read what waited through the stall first
            self._register_deadline = runner.reactor.callLater(PUT_OFF_S, self._register_expired)
            return
        self._register_deadline = None
        session = self.session
        if session is None or session.registered or self._closing:
            return
        self.factory.unregistered_closed += 1
        self._closing = True
        self.sendClose(REGISTER_TIMEOUT_CODE, "Client did not register in time")

    def _cancel_register_deadline(self) -> None:
        deadline = self._register_deadline
        if deadline is not None:
            self._register_deadline = None
            if deadline.active():
                deadline.cancel()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None or self._closing:
            return
        runner = self.factory.runner
        was_registered = session.client_id is not None
        if runner.cluster is not None:
            # A frame after a register still being written goes to the same room, after it.
            room_id = session.room_id or self._register_room or session.register_room(payload)
            if room_id is not None:
                self._register_room = room_id
                frame_now = runner.now()
                stall = runner.check_stall(frame_now)
                self._pending += 1
                d = runner.in_room(room_id, lambda: (None, session.handle_frame(payload, now=frame_now, stall=stall)),
                                   speculative=(session.save_state, session.restore_state) if was_registered else None)
                d.addCallback(lambda result: self._handled(was_registered, result[1]))
                d.addErrback(self._cluster_error)
                d.addBoth(self._op_done)
                return
        now = runner.now()
        effects = session.handle_frame(payload, now=now, stall=runner.check_stall(now))
        self._handled(was_registered, effects)

    def _handled(self, was_registered: bool, effects: list[Effect]) -> None:
        session = self.session
        assert session is not None
        runner = self.factory.runner
        if not was_registered and session.client_id is not None:
            assert session.room_id is not None
            self._cancel_register_deadline()
            if self._closing or self.session_closed:
                # The socket closed while its register was being written: undo it.
                runner.sockets.pop((session.room_id, session.client_id), None)
                self._close_in_room()
                return
            runner.sockets[(session.room_id, session.client_id)] = self
            runner.apply(effects, self)
            runner.rearm()
        else:
            runner.apply(effects, self)

    def _cluster_error(self, failure: Any) -> None:
        """Shared state out of reach: the client is told, nothing is half done."""
        log.warn("cluster: a signaling frame could not be handled: {error}", error=failure.getErrorMessage())
        if not self._closing and not self.session_closed:
            from webrtcstack.signaling.messages import envelope
            self.send_text(envelope(error="The service is unavailable; try again shortly").encode("utf-8"))

    session_closed = False
    _pending = 0
    _register_room: str | None = None

    def _op_done(self, _: Any) -> None:
        self._pending -= 1
        session = self.session
        if self._pending == 0 and self.session_closed and session is not None and not session.registered:
            self.factory.runner.cluster.forget(self)  # closed before it ever registered

    def _close_in_room(self) -> None:
        session = self.session
        runner = self.factory.runner
        if session is None or session.room_id is None:
            return
        d = runner.in_room(session.room_id, lambda: (None, session.handle_close(now=runner.now())))
        d.addCallback(lambda result: (runner.apply(result[1]), runner.rearm()))
        d.addErrback(runner._cluster_failed, f"the close of a socket in room {session.room_id}")
        d.addBoth(lambda _: runner.cluster.forget(self))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._cancel_register_deadline()
        factory = self.factory
        factory.open_sockets.discard(self)
        if self._peer_ip is not None:
            factory.open_count -= 1
            left = factory.per_ip.get(self._peer_ip, 1) - 1
            if left <= 0:
                factory.per_ip.pop(self._peer_ip, None)
            else:
                factory.per_ip[self._peer_ip] = left
            self._peer_ip = None
        session = self.session
        if session is None:
            return
        runner = factory.runner
        self.session_closed = True
        if session.room_id is not None and session.client_id is not None:
            key = (session.room_id, session.client_id)
            if runner.sockets.get(key) is self:
                del runner.sockets[key]
        if runner.cluster is not None:
            if session.registered:
                self._close_in_room()
            elif self._pending == 0:
                runner.cluster.forget(self)
            # else: a register is being written; _handled closes it in its room when it lands
            return
        runner.apply(session.handle_close(now=runner.now()))
        runner.rearm()

    def close_soon(self) -> None:
        """Start the closing handshake (code 1000) once."""
        if not self._closing:
            self._closing = True
            self.sendClose(1000)


class SignalingServerFactory(WebSocketServerFactory):
    """Makes signaling sockets; holds the limits and the connection counts.

    :param runner: the hub runner shared with the room server.
    :param allowed_origins: ``[signaling] allowed_origins``.
    :param public_url: ``[http] public_url`` (its origin is always allowed).
    """

    protocol = SignalingServerProtocol

    def __init__(self, runner: HubRunner, *, allowed_origins: tuple[str, ...] = (), public_url: str = "",
                 max_message_bytes: int = 65536, max_connections: int = 10000,
                 max_connections_per_ip: int = 50, messages_per_second: int = 50,
                 ping_interval_s: int = 30, message_burst: int = 100,
                 max_send_buffer_bytes: int = 1 << 20) -> None:
        super().__init__()
        self.runner = runner
        self.allowed_origins = allowed_origins
        self.public_url = public_url
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.messages_per_second = messages_per_second
        self.open_count = 0
        #: handshakes refused by the Origin check (SignalingResource)
        self.refused_origins = 0
        #: handshakes refused (503) because max_connections sockets were open
        self.refused_full = 0
        #: handshakes refused (429) because their address had max_connections_per_ip open
        self.refused_per_address = 0
        #: sockets closed because they never registered
        self.unregistered_closed = 0
        #: sockets closed because their client did not read
        self.slow_readers_closed = 0
        self.message_burst = message_burst
        self.max_send_buffer_bytes = max_send_buffer_bytes
        self.per_ip: dict[str, int] = {}
        #: the client address of the upgrade request being handed over (set by SignalingResource)
        self.handshake_client: str | None = None
        #: every accepted socket, registered or not (closed on stop)
        self.open_sockets: set[SignalingServerProtocol] = set()
        self.apply_limits(max_message_bytes, ping_interval_s)

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        # SignalingResource set this just before Autobahn builds the protocol, in the same call.
        proto.client_ip, self.handshake_client = self.handshake_client, None
        return proto

    @property
    def unregistered_count(self) -> int:
        """Open sockets that have not registered (yet)."""
        return sum(1 for p in self.open_sockets if p.session is None or not p.session.registered)

    def apply_limits(self, max_message_bytes: int, ping_interval_s: int) -> None:
        """Set the frame caps and pings for sockets opened from now on (start and reload)."""
        self.max_message_bytes = max_message_bytes
        self.setProtocolOptions(
            # Autobahn's own cap closes the socket with 1009 and no envelope;
            # ours (in the session) answers with an error text first, so
            # Autobahn's sits well above it.
            maxMessagePayloadSize=max_message_bytes * 4,
            maxFramePayloadSize=max_message_bytes * 4,
            # A protocol error (a frame over the cap: 1009; invalid UTF-8:
            # 1007; a bad frame: 1002) ends with a close frame carrying its
            # code, not a TCP reset.
            failByDrop=False,
            # The Origin was checked (and the header removed) by
            # SignalingResource; Autobahn must not judge it again.
            allowNullOrigin=True,
            autoPingInterval=float(ping_interval_s or 0),
            autoPingTimeout=float(ping_interval_s or 0),
        )
        # Autobahn copies every option from the factory onto each new protocol and
        # pretty-prints the list for a debug line, eagerly, even with debug off:
        # a quarter of a millisecond per connection.  A protocol class of this
        # factory's own that carries the options as class attributes, with no
        # list to copy, gives every socket the same options for nothing.
        # A function stored on a class would become a method (``self`` passed first):
        # perMessageCompressionAccept is one, so functions are kept as static.
        options = {name: staticmethod(value) if isinstance(value, types.FunctionType) else value
                   for name in WebSocketServerProtocol.CONFIG_ATTRS for value in (getattr(self, name),)}
        self.protocol = type(SignalingServerProtocol.__name__, (SignalingServerProtocol,),
                             {**options, "CONFIG_ATTRS": (), "__module__": __name__})

