"""The signaling hub: collider's rooms, clients and queues, joined to the room server.

One :class:`SignalingHub` is the switchboard of the process.  The room
resources call :meth:`~SignalingHub.handle_join`, ``handle_message`` and
``handle_leave`` (which run the room rules of
:class:`~webrtcstack.rooms.model.RoomRegistry` and keep the signaling side in
step); the WebSocket shell feeds each socket's frames to a
:class:`SignalingSession`; collider's HTTP API calls ``handle_post`` and
``handle_delete``.  Outputs are effects: :class:`Deliver` a frame to a
client's socket, :class:`Disconnect` a client's socket, :class:`Reply` on the
socket that sent the frame.

Collider's rules, kept: capacity counts unregistered clients; a message is
delivered at once to every other registered client, or queued on the *sender*
(bounded) when nobody can take it; a client's queue goes to the next client
that registers; a client whose socket closes is removed after the register
timeout unless it registers again.

Beyond collider (with a room registry):

- only a client id the room server issued for the room may register (no
  hijacking of someone else's room);
- a join creates the signaling client at once with the register timeout, so
  a client that joins and never connects does not hold the room;
- removing a signaling client (socket gone for the grace period, DELETE,
  never registered) also removes it from its room: no ghost rooms
  (apprtc issue #251);
- ``/leave`` marks the signaling client as left: it may still send its
  ``bye``, counts for nothing, and goes with its socket.

Group calls (a *mesh* room, made by our page; docs/rooms.md), an extension
collider's clients never see:

- on ``register`` the member gets ``{"type":"members","ids":[…]}`` (the
  others in the room), then every frame addressed to it while it had no
  socket, in order;
- the others get ``{"type":"joined","id":…}`` on a member's first register
  and ``{"type":"left","id":…}`` when it leaves or its grace period runs out;
  these frames have no ``from``: they come from the server;
- ``send`` takes ``to`` (one member; else every other member); the server
  stamps each delivered frame with ``"from"``, the sender's client id, so no
  member can speak as another; a ``to`` that names no member is an error and
  delivers nothing;
- a frame for a member without a socket waits in that member's inbox
  (bounded like a queue) until it registers again.

This module is part of the sans-IO core.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Callable

import attr

from webrtcstack.rooms.model import LOOPBACK_CLIENT_ID, JoinResult, MessageResult, Result, RoomRegistry, is_valid_id
from webrtcstack.limits import ByteBudget, TokenBucket
from webrtcstack.rooms.storage import Channel, Member, Peer, Room, Storage
from webrtcstack.signaling.messages import Errors, FrameError, envelope, parse_command

__all__ = [
    "Deliver",
    "Disconnect",
    "Reply",
    "Effect",
    "SignalingError",
    "SignalingHub",
    "SignalingSession",
    "LOOPBACK_SOCKET_CLIENT_ID",
]

#: the id apprtc's loopback page registers its second socket with (lower case!)
LOOPBACK_SOCKET_CLIENT_ID = "loopback_client_id"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Deliver:
    """Send ``frame`` on the socket of ``(room_id, client_id)``."""

    room_id: str
    client_id: str
    frame: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Disconnect:
    """Close the socket ``conn`` (bound to ``(room_id, client_id)``)."""

    room_id: str
    client_id: str
    conn: object


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Reply:
    """Send ``frame`` on the socket that sent the command; then close it if ``close``."""

    frame: str
    close: bool = False


Effect = Deliver | Disconnect | Reply


class SignalingError(Exception):
    """A command the hub refuses; ``str(e)`` is the text for the client."""


@attr.s(slots=True, auto_attribs=True)
class Counters:
    """collider's ``/status`` numbers."""

    open_ws: int = 0
    total_ws: int = 0
    ws_errors: int = 0
    http_errors: int = 0
    #: frames handed to a recipient's socket
    messages_forwarded: int = 0
    #: messages queued on their sender for later delivery
    messages_queued: int = 0
    #: messages refused (queue full, over a limit)
    messages_dropped: int = 0


class SignalingHub:
    """Signaling state and rules; see the module docstring.

    :param storage: shared with ``rooms`` (if any).
    :param rooms: the room registry, or None to run as a plain collider
        (any client may register any room).
    :param capacity: clients per room.
    :param register_timeout_s: how long a client may have no socket.
    :param max_queued: messages queued per sending client.
    :param max_queued_bytes: UTF-8 bytes queued per sending client.
    :param buffers: the process-wide byte ceiling (shared with the room registry).
    :param max_rooms: channels at once (without a registry; with one the
        registry's own limit applies at join).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        rooms: RoomRegistry | None = None,
        capacity: int = 2,
        register_timeout_s: float = 10.0,
        max_queued: int = 1024,
        max_queued_bytes: int = 1 << 20,
        max_rooms: int = 10000,
        buffers: ByteBudget | None = None,
    ) -> None:
        self.storage = storage
        self.rooms = rooms
        self.capacity = capacity
        self.register_timeout_s = register_timeout_s
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        #: the process-wide ceiling on held message bytes (shared with the registry)
        self.buffers = buffers if buffers is not None else ByteBudget(1 << 62)
        self.max_rooms = max_rooms
        self.counters = Counters()
        #: set by the shell while the service drains: new joins are refused
        self.draining = False
        self._timers: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()

    # -- room server inputs --------------------------------------------------

    def handle_join(self, room_id: str, *, loopback: bool = False, mesh: bool = False, now: float) -> JoinResult:
        """``POST /join``: the registry's join, then expect the new client's socket."""
        assert self.rooms is not None
        result = self.rooms.handle_join(room_id, loopback=loopback, mesh=mesh, now=now)
        if result.result is not Result.SUCCESS:
            return result
        channel = self._channel(room_id, create=True)
        assert channel is not None
        self._add_peer(channel, result.client_id, now)
        if loopback and self.rooms.is_member(room_id, LOOPBACK_CLIENT_ID):
            channel.peers[LOOPBACK_SOCKET_CLIENT_ID] = Peer(LOOPBACK_SOCKET_CLIENT_ID, pseudo=True)
        self.storage.put_channel(channel)
        return result

    def handle_message(self, room_id: str, client_id: str, message: str, *, now: float) -> tuple[MessageResult, list[Effect]]:
        """``POST /message``: store it in the room, or pass it on as the client's ``send``."""
        assert self.rooms is not None
        result = self.rooms.handle_message(room_id, client_id, message, now=now)
        if not result.forward:
            return result, []
        try:
            return result, self.handle_post(room_id, client_id, message, now=now)
        except SignalingError as e:
            return MessageResult(Result.ERROR, error=str(e)), []

    def handle_leave(self, room_id: str, client_id: str, *, now: float) -> tuple[Result, list[Effect]]:
        """``POST /leave`` (and ``/bye``): leave the room; the socket may still send ``bye``."""
        assert self.rooms is not None
        result = self.rooms.handle_leave(room_id, client_id, now=now)
        effects: list[Effect] = []
        channel = self.storage.get_channel(room_id)
        if channel is not None:
            peer = channel.peers.get(client_id)
            if peer is not None and not peer.left:
                if self._mesh(room_id):
                    effects.extend(self._presence(channel, peer, "left"))
                peer.left = True
                if peer.conn is None:
                    self._remove(channel, peer, effects, notify=False)
                else:
                    self._arm(channel.room_id, peer, now + self.register_timeout_s)
            self._drop_lonely_pseudo(channel, effects)
        return result, effects

    # -- collider inputs -----------------------------------------------------

    def handle_register(self, room_id: str, client_id: str, conn: object, *, now: float) -> list[Effect]:
        """Bind a socket to ``(room_id, client_id)`` and hand it what others queued.

        :raises SignalingError: room full, client bound elsewhere, or (with a
            registry) an id pair the room server did not issue.
        """
        channel = self._channel(room_id, create=self.rooms is None)
        peer = channel.peers.get(client_id) if channel is not None else None
        if self.rooms is not None:
            if channel is None or peer is None or peer.left:
                raise SignalingError(Errors.NOT_ISSUED)
        elif peer is None:
            assert channel is not None
            self._check_capacity(channel)
            peer = self._add_peer(channel, client_id, now)
        assert channel is not None and peer is not None
        if peer.conn is not None:
            raise SignalingError(Errors.DUPLICATED_REGISTRATION)
        peer.conn = conn
        peer.remove_at = None
        self.counters.open_ws += 1
        self.counters.total_ws += 1
        effects: list[Effect] = []
        if self._mesh(room_id):
            self._register_mesh(channel, peer, effects, now)
        elif sum(1 for p in channel.peers.values() if not p.left) >= 2:
            for other in channel.peers.values():
                if other is not peer and other.queue and not other.left:
                    for msg in other.queue:
                        effects.append(Deliver(room_id, client_id, envelope(msg)))
                    self.counters.messages_forwarded += len(other.queue)
                    self._release_queue(other)
        self.storage.put_channel(channel)
        if self.rooms is not None:
            self.rooms.touch(room_id, now=now)
        return effects

    def handle_send(self, room_id: str, client_id: str, msg: str, *, to: str = "", now: float) -> list[Effect]:
        """A message from a registered client: deliver it or queue it on the sender.

        In a group call it goes to ``to`` (else to every other member), stamped
        with the sender, and waits in a recipient's inbox while it has no socket.

        :raises SignalingError: the sender is gone, a queue is full, or ``to`` names no member.
        """
        channel = self.storage.get_channel(room_id)
        peer = channel.peers.get(client_id) if channel is not None else None
        if channel is None or peer is None:
            raise SignalingError(Errors.NOT_REGISTERED)
        if self._mesh(room_id):
            return self._send_mesh(channel, peer, msg, to, now)
        return self._send(channel, peer, msg, now)

    def handle_post(self, room_id: str, client_id: str, msg: str, *, now: float) -> list[Effect]:
        """collider's ``POST /<room>/<client>``: a ``send`` that may create the client.

        Without a registry an unknown client is created, unregistered, with
        the register timeout; with one only a client of the room may post.

        :raises SignalingError: room full, queue full, or not in the room.
        """
        channel = self._channel(room_id, create=self.rooms is None)
        peer = channel.peers.get(client_id) if channel is not None else None
        if peer is None:
            if self.rooms is not None or channel is None:
                raise SignalingError(Errors.NOT_IN_ROOM)
            self._check_capacity(channel)
            peer = self._add_peer(channel, client_id, now)
            self.storage.put_channel(channel)
        assert channel is not None
        if self._mesh(room_id):
            return self._send_mesh(channel, peer, msg, "", now)
        return self._send(channel, peer, msg, now)

    def handle_delete(self, room_id: str, client_id: str, *, now: float) -> list[Effect]:
        """collider's ``DELETE /<room>/<client>``: remove the client (and from its room)."""
        effects: list[Effect] = []
        channel = self.storage.get_channel(room_id)
        if channel is not None:
            peer = channel.peers.get(client_id)
            if peer is not None:
                self._remove(channel, peer, effects, notify=True, now=now)
        return effects

    def handle_disconnect(self, room_id: str, client_id: str, conn: object, *, now: float) -> list[Effect]:
        """A registered socket closed: keep the client for the grace period (or drop it if it left)."""
        effects: list[Effect] = []
        channel = self.storage.get_channel(room_id)
        peer = channel.peers.get(client_id) if channel is not None else None
        if channel is None or peer is None or peer.conn != conn:
            return effects
        peer.conn = None
        self.counters.open_ws -= 1
        if peer.left:
            self._remove(channel, peer, effects, notify=False)
        elif not peer.pseudo:
            self._arm(room_id, peer, now + self.register_timeout_s)
            self.storage.put_channel(channel)
        return effects

    def due_rooms(self, *, now: float) -> set[str]:
        """The rooms with a client whose time without a socket has run out."""
        return {room_id for at, _, room_id, _ in self._timers if at <= now}

    def handle_timers(self, *, now: float, only_room: str | None = None) -> list[Effect]:
        """Remove clients whose time without a socket ran out; expire idle rooms.

        :param only_room: handle that room's clients only (a node of a
            cluster changes one room at a time; see :mod:`webrtcstack.cluster`).
        """
        effects: list[Effect] = []
        if only_room is not None:
            due = sorted(t for t in self._timers if t[0] <= now and t[2] == only_room)
            if due:
                self._timers = [t for t in self._timers if not (t[0] <= now and t[2] == only_room)]
                heapq.heapify(self._timers)
            for at, _, room_id, client_id in due:
                self._expire(room_id, client_id, at, effects, now)
            return effects
        while self._timers and self._timers[0][0] <= now:
            at, _, room_id, client_id = heapq.heappop(self._timers)
            self._expire(room_id, client_id, at, effects, now)
        if self.rooms is not None:
            for room_id in self.rooms.handle_timers(now=now, in_call=self._in_call):
                channel = self.storage.get_channel(room_id)
                if channel is not None:
                    for peer in list(channel.peers.values()):
                        self._remove(channel, peer, effects, notify=False)
        return effects

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timers` next has work, or None."""
        deadlines = []
        if self._timers:
            deadlines.append(self._timers[0][0])
        if self.rooms is not None:
            rooms_deadline = self.rooms.next_deadline()
            if rooms_deadline is not None:
                deadlines.append(rooms_deadline)
        return min(deadlines) if deadlines else None

    # -- shared state (``[redis]``) ----------------------------------------------

    def handle_gone(self, room_id: str, gone: Callable[[object], bool], *, now: float) -> list[Effect]:
        """Sockets lost with their process: each such client leaves as if it had hung up.

        The others in the room get a ``bye`` from it, and it leaves the room
        (a new joiner is admitted).

        :param gone: says which stored socket tokens belong to a process that is gone.
        """
        channel = self.storage.get_channel(room_id)
        if channel is None:
            return []
        effects: list[Effect] = []
        bye = envelope(json.dumps({"type": "bye"}))
        for peer in list(channel.peers.values()):
            if peer.conn is None or not gone(peer.conn):
                continue
            for other in channel.peers.values():
                if other is not peer and other.conn is not None and not other.left:
                    effects.append(Deliver(room_id, other.client_id, bye))
            effects += self.handle_delete(room_id, peer.client_id, now=now)
        return effects

    def handle_reclaim(self, room_id: str, clients: list[tuple[str, object]], *, now: float) -> list[Effect]:
        """The shared state was lost (Redis restarted empty): put back the clients whose sockets this process holds.

        Each becomes a member (the first one back the initiator) and a
        registered client again; what is already there is kept.
        """
        room = None
        if self.rooms is not None:
            room = self.storage.get_room(room_id) or Room(room_id, now + self.rooms.room_ttl_s)
        channel = self.storage.get_channel(room_id) or Channel(room_id)
        for client_id, conn in clients:
            if room is not None and client_id not in room.members:
                room.members[client_id] = Member(client_id, not room.members)
            peer = channel.peers.get(client_id)
            if peer is None:
                channel.peers[client_id] = Peer(client_id, conn=conn)
            elif peer.conn is None:
                peer.conn, peer.remove_at = conn, None
        if room is not None:
            self.storage.put_room(room)
        self.storage.put_channel(channel)
        return []

    # -- queries -------------------------------------------------------------

    def status(self, *, uptime_s: float) -> dict[str, float | int]:
        """collider's ``/status`` object."""
        c = self.counters
        return {"upsec": uptime_s, "openws": c.open_ws, "totalws": c.total_ws, "wserrors": c.ws_errors, "httperrors": c.http_errors}

    def describe_rooms(self, *, now: float) -> list[dict[str, object]]:
        """Every room with its members and whether each has a signaling socket here (the sessions admin)."""
        out: list[dict[str, object]] = []
        for room in self.storage.iter_rooms():
            channel = self.storage.get_channel(room.room_id)
            peers = channel.peers if channel is not None else {}
            members = []
            for client_id, member in room.members.items():
                peer = peers.get(client_id)
                members.append({"client": client_id, "initiator": member.is_initiator,
                                "socket": peer is not None and peer.conn is not None,
                                "queued": len(peer.queue) if peer is not None else 0,
                                "inbox": len(peer.inbox) if peer is not None else 0})
            out.append({"room": room.room_id, "members": members, "expires_in_s": round(room.expires_at - now, 1)})
        return out

    def handle_kick(self, room_id: str, client_id: str, *, now: float) -> tuple[Result, list[Effect]]:
        """An operator ends a client's session: the others get ``bye``, its socket closes, it leaves the room."""
        assert self.rooms is not None
        result = self.rooms.handle_leave(room_id, client_id, now=now)
        effects: list[Effect] = []
        channel = self.storage.get_channel(room_id)
        peer = channel.peers.get(client_id) if channel is not None else None
        if channel is not None and peer is not None:
            if not peer.left and self._mesh(room_id):
                effects.extend(self._presence(channel, peer, "left"))
            elif not peer.left:
                bye = envelope(json.dumps({"type": "bye"}))
                for other in channel.peers.values():
                    if other is not peer and other.conn is not None and not other.left:
                        effects.append(Deliver(room_id, other.client_id, bye))
            peer.left = True
            self._remove(channel, peer, effects, notify=False, now=now)
            result = Result.SUCCESS
        return result, effects

    def peer(self, room_id: str, client_id: str) -> Peer | None:
        """The signaling client, if any (for tests and status pages)."""
        channel = self.storage.get_channel(room_id)
        return channel.peers.get(client_id) if channel is not None else None

    # -- internals -----------------------------------------------------------

    # -- group calls -------------------------------------------------------

    def _mesh(self, room_id: str) -> bool:
        """Whether the room is a group call (only with a room registry)."""
        return self.rooms is not None and self.rooms.is_mesh(room_id)

    def _presence(self, channel: Channel, about: Peer, kind: str) -> list[Effect]:
        """``{"type": kind, "id": …}`` from the server to every other member with a socket."""
        frame = envelope(json.dumps({"type": kind, "id": about.client_id}))
        out: list[Effect] = [Deliver(channel.room_id, other.client_id, frame) for other in channel.peers.values()
                             if other is not about and other.conn is not None and not other.left and not other.pseudo]
        self.counters.messages_forwarded += len(out)
        return out

    def _register_mesh(self, channel: Channel, peer: Peer, effects: list[Effect], now: float) -> None:
        """A group call member registered: the member list, its inbox, and (the first time) ``joined`` to the others."""
        assert self.rooms is not None
        room = self.storage.get_room(channel.room_id)
        others = [cid for cid in (room.members if room is not None else ()) if cid != peer.client_id]
        effects.append(Deliver(channel.room_id, peer.client_id, envelope(json.dumps({"type": "members", "ids": others}))))
        for frame in peer.inbox:
            effects.append(Deliver(channel.room_id, peer.client_id, frame))
        self.counters.messages_forwarded += len(peer.inbox)
        self._release_inbox(peer)
        if not peer.announced:
            peer.announced = True
            effects.extend(self._presence(channel, peer, "joined"))

    def _send_mesh(self, channel: Channel, sender: Peer, msg: str, to: str, now: float) -> list[Effect]:
        """Deliver ``msg`` stamped with its sender to ``to`` (or every other member); inbox it for those without a socket."""
        if to:
            target = channel.peers.get(to)
            if target is None or target is sender or target.left or target.pseudo:
                self.counters.messages_dropped += 1
                raise SignalingError(Errors.UNKNOWN_RECIPIENT)
            targets = [target]
        else:
            targets = [p for p in channel.peers.values() if p is not sender and not p.left and not p.pseudo]
        frame = envelope(msg, sender=sender.client_id)
        size = len(frame.encode("utf-8"))
        waiting = [t for t in targets if t.conn is None]
        # Check every inbox first: a message goes to all its recipients or to none.
        for target in waiting:
            if len(target.inbox) >= self.max_queued or target.inbox_bytes + size > self.max_queued_bytes:
                self.counters.messages_dropped += 1
                raise SignalingError(Errors.QUEUE_FULL)
        if waiting and not self.buffers.take(size * len(waiting)):
            self.counters.messages_dropped += 1
            raise SignalingError(Errors.SERVER_FULL)
        effects: list[Effect] = []
        for target in targets:
            if target.conn is None:
                target.inbox.append(frame)
                target.inbox_bytes += size
                self.counters.messages_queued += 1
            else:
                effects.append(Deliver(channel.room_id, target.client_id, frame))
        self.counters.messages_forwarded += len(effects)
        if waiting:
            self.storage.put_channel(channel)
        return effects

    def _release_inbox(self, peer: Peer) -> None:
        self.buffers.release(peer.inbox_bytes)
        peer.inbox.clear()
        peer.inbox_bytes = 0

    def _release_queue(self, peer: Peer) -> None:
        """Empty a client's queue and give its bytes back to the process budget."""
        peer.queue.clear()
        self.buffers.release(peer.queued_bytes)
        peer.queued_bytes = 0

    def _in_call(self, room_id: str) -> bool:
        """Whether a call is in progress: two or more clients with live sockets (the room must not expire).

        A lone client waiting with its socket open does not hold its room
        past the room's lifetime.
        """
        channel = self.storage.get_channel(room_id)
        return channel is not None and sum(1 for p in channel.peers.values() if p.conn is not None) >= 2

    def _channel(self, room_id: str, *, create: bool) -> Channel | None:
        channel = self.storage.get_channel(room_id)
        if channel is None and create:
            if self.rooms is None and self.storage.channel_count() >= self.max_rooms:
                raise SignalingError(Errors.TOO_MANY_ROOMS)
            channel = Channel(room_id)
        return channel

    def _check_capacity(self, channel: Channel) -> None:
        if sum(1 for p in channel.peers.values() if not p.left) >= self.capacity:
            raise SignalingError(Errors.ROOM_FULL)

    def _add_peer(self, channel: Channel, client_id: str, now: float) -> Peer:
        peer = Peer(client_id)
        channel.peers[client_id] = peer
        self._arm(channel.room_id, peer, now + self.register_timeout_s)
        self.storage.put_channel(channel)
        return peer

    def _expire(self, room_id: str, client_id: str, at: float, effects: list[Effect], now: float) -> None:
        """A client's timer set for ``at`` ran out: remove it, unless it re-registered, was re-armed or is gone."""
        channel = self.storage.get_channel(room_id)
        peer = channel.peers.get(client_id) if channel is not None else None
        if channel is not None and peer is not None and peer.remove_at == at:
            self._remove(channel, peer, effects, notify=True, now=now)

    def arm_overdue(self, channel: Channel, now: float) -> None:
        """Put on this node's timers every client of ``channel`` whose removal time has passed.

        In a cluster the node that set a client's timer may be gone; any
        node that loads the room finishes what that timer would have done.
        """
        for peer in channel.peers.values():
            if peer.remove_at is not None and peer.remove_at <= now:
                heapq.heappush(self._timers, (peer.remove_at, next(self._seq), channel.room_id, peer.client_id))

    def _arm(self, room_id: str, peer: Peer, at: float) -> None:
        peer.remove_at = at
        heapq.heappush(self._timers, (at, next(self._seq), room_id, peer.client_id))

    def _send(self, channel: Channel, sender: Peer, msg: str, now: float) -> list[Effect]:
        effects: list[Effect] = []
        queue = False
        frame = None
        for other in channel.peers.values():
            if other is sender or other.left:
                continue
            if other.conn is None:
                queue = True
                continue
            if frame is None:
                frame = envelope(msg)
            effects.append(Deliver(channel.room_id, other.client_id, frame))
        self.counters.messages_forwarded += len(effects)
        if frame is None or queue:
            size = len(msg.encode("utf-8"))
            if len(sender.queue) >= self.max_queued or sender.queued_bytes + size > self.max_queued_bytes:
                self.counters.messages_dropped += 1
                raise SignalingError(Errors.QUEUE_FULL)
            if not self.buffers.take(size):
                self.counters.messages_dropped += 1
                raise SignalingError(Errors.SERVER_FULL)
            sender.queue.append(msg)
            sender.queued_bytes += size
            self.counters.messages_queued += 1
            self.storage.put_channel(channel)
        return effects

    def _remove(self, channel: Channel, peer: Peer, effects: list[Effect], *, notify: bool, now: float = 0.0) -> None:
        if channel.peers.get(peer.client_id) is not peer:
            return
        if not peer.left and not peer.pseudo and self._mesh(channel.room_id):
            effects.extend(self._presence(channel, peer, "left"))
        del channel.peers[peer.client_id]
        self._release_queue(peer)
        self._release_inbox(peer)
        peer.remove_at = None
        if peer.conn is not None:
            effects.append(Disconnect(channel.room_id, peer.client_id, peer.conn))
            peer.conn = None
            self.counters.open_ws -= 1
        if notify and not peer.left and not peer.pseudo and self.rooms is not None:
            self.rooms.handle_leave(channel.room_id, peer.client_id, now=now)
        self._drop_lonely_pseudo(channel, effects)
        if channel.peers:
            self.storage.put_channel(channel)
        else:
            self.storage.delete_channel(channel.room_id)

    def _drop_lonely_pseudo(self, channel: Channel, effects: list[Effect]) -> None:
        """The loopback pseudo client goes when no real client is left."""
        if any(not p.pseudo and not p.left for p in channel.peers.values()):
            return
        for p in [p for p in channel.peers.values() if p.pseudo]:
            del channel.peers[p.client_id]
            self._release_queue(p)
            if p.conn is not None:
                effects.append(Disconnect(channel.room_id, p.client_id, p.conn))
                p.conn = None
                self.counters.open_ws -= 1
        if not channel.peers:
            self.storage.delete_channel(channel.room_id)


class SignalingSession:
    """One WebSocket's side of the protocol: parse frames, check limits, call the hub.

    :param conn: the token the hub stores for this socket (the shell passes
        its protocol object).
    """

    def __init__(self, hub: SignalingHub, conn: object, *, max_message_bytes: int = 65536,
                 messages_per_second: int = 50, burst: int | None = None, now: float) -> None:
        self.hub = hub
        self.conn = conn
        self.max_message_bytes = max_message_bytes
        self.rate = float(messages_per_second)
        #: frames and pings from this socket: ``rate`` a second, bursts up to ``burst``
        self.bucket = TokenBucket(self.rate, float(burst if burst is not None else messages_per_second), now)
        self.room_id: str | None = None
        self.client_id: str | None = None
        self._closed = False
        self._stall_seen = 0

    @property
    def registered(self) -> bool:
        """Whether this socket registered successfully."""
        return self.client_id is not None

    def _error(self, text: str, close: bool = True) -> list[Effect]:
        self.hub.counters.ws_errors += 1
        return [Reply(envelope(error=text), close)]

    def _bonus(self, stall: tuple[int, float]) -> float:
        """Tokens owed for a reactor stall not yet credited to this socket (``stall``: id, seconds)."""
        if stall[0] == self._stall_seen:
            return 0.0
        self._stall_seen = stall[0]
        return stall[1] * self.rate

    def handle_frame(self, payload: bytes, *, now: float, stall: tuple[int, float] = (0, 0.0)) -> list[Effect]:
        """One text or binary frame from the client.

        :param stall: the last reactor stall the shell saw (a number that
            changes with each stall, and its length in seconds): frames that
            waited through it are not counted as a burst against the rate.
        """
        if len(payload) > self.max_message_bytes:
            self.hub.counters.messages_dropped += 1
            return self._error(Errors.too_large(self.max_message_bytes))
        if not self.bucket.take(1.0, now, self._bonus(stall)):
            self.hub.counters.messages_dropped += 1
            return self._error(Errors.too_fast(int(self.rate)), close=False)
        try:
            command = parse_command(payload.decode("utf-8"))
        except UnicodeDecodeError as e:
            return self._error(Errors.JSON_PREFIX + f"invalid UTF-8: {e.reason}")
        except FrameError as e:
            return self._error(str(e))
        if command.cmd == "send":
            if self.room_id is None or self.client_id is None:
                return self._error(Errors.NOT_REGISTERED)
            if not command.msg:
                return self._error(Errors.INVALID_SEND)
            try:
                return self.hub.handle_send(self.room_id, self.client_id, command.msg, to=command.to, now=now)
            except SignalingError as e:
                return self._error(str(e), close=False)
        if command.cmd == "register":
            if self.registered:
                return self._error(Errors.DUPLICATED_REGISTER_REQUEST)
            if not command.roomid or not command.clientid:
                return self._error(Errors.INVALID_REGISTER)
            if not is_valid_id(command.roomid) or not is_valid_id(command.clientid):
                return self._error(Errors.BAD_ID)
            try:
                effects = self.hub.handle_register(command.roomid, command.clientid, self.conn, now=now)
            except SignalingError as e:
                return self._error(str(e))
            self.room_id, self.client_id = command.roomid, command.clientid
            return effects
        return self._error(Errors.UNEXPECTED_CMD, close=False)

    @staticmethod
    def register_room(payload: bytes) -> str | None:
        """The room a ``register`` frame names, if it is a well-formed one (else None: the session answers it alone).

        A shell that changes one room at a time (``[redis]``) must know the
        room before the frame is handled.
        """
        if b'"register"' not in payload:
            return None
        try:
            command = parse_command(payload.decode("utf-8"))
        except (UnicodeDecodeError, FrameError):
            return None
        if command.cmd == "register" and command.roomid and is_valid_id(command.roomid):
            return command.roomid
        return None

    def save_state(self) -> tuple[float, float, int, tuple[int, ...], int]:
        """What handling a frame changes outside the room's records (rate bucket, stall credit, hub counters)."""
        hub = self.hub
        counters: tuple[int, ...] = attr.astuple(hub.counters, recurse=False)
        return self.bucket.tokens, self.bucket.updated_at, self._stall_seen, counters, hub.buffers.held

    def restore_state(self, saved: tuple[float, float, int, tuple[int, ...], int]) -> None:
        """Undo a frame handled on a copy of the records that turned out stale (see :meth:`save_state`)."""
        hub = self.hub
        self.bucket.tokens, self.bucket.updated_at, self._stall_seen, counters, hub.buffers.held = saved
        for field, value in zip(attr.fields(Counters), counters):
            setattr(hub.counters, field.name, value)

    def handle_ping(self, *, now: float, stall: tuple[int, float] = (0, 0.0)) -> bool:
        """A WebSocket ping from the client: whether to answer it (pings count against the message rate)."""
        if self.bucket.take(1.0, now, self._bonus(stall)):
            return True
        self.hub.counters.ws_errors += 1
        return False

    def handle_close(self, *, now: float) -> list[Effect]:
        """The socket is gone (any reason): start the client's grace period."""
        if self._closed:
            return []
        self._closed = True
        if self.room_id is None or self.client_id is None:
            return []
        return self.hub.handle_disconnect(self.room_id, self.client_id, self.conn, now=now)
