"""The room server's rules (apprtc's join / message / leave), on a :class:`Storage`.

A room made by an apprtc client holds two clients, as apprtc's does.  A room
made by our page asking for a group call (``/join/<room>?mesh=1``) is a
*mesh* room of up to ``capacity`` members (``[rooms] capacity``, at most
:data:`MAX_MESH_CAPACITY`), when that is above two; only group-call clients
may join it (an apprtc client is told the room is full).  See docs/rooms.md.  The first to join is the
initiator; what it POSTs to ``/message`` while alone is stored and handed to
the next joiner in the join response.  When the room is full, messages are
not stored: the caller passes them to signaling.  A room with no change for
``room_ttl_s`` is removed by :meth:`RoomRegistry.handle_timers`.

This module is part of the sans-IO core: inputs are method calls taking
``now=``, randomness comes from :mod:`secrets`.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Callable

import attr

from webrtcstack.limits import ByteBudget
from webrtcstack.rooms.storage import Member, Room, Storage

__all__ = [
    "Result",
    "LOOPBACK_CLIENT_ID",
    "ID_PATTERN",
    "APPRTC_CAPACITY",
    "MAX_MESH_CAPACITY",
    "is_valid_id",
    "new_client_id",
    "JoinResult",
    "MessageResult",
    "RoomRegistry",
]

#: the pseudo client ``?debug=loopback`` adds to a room (apprtc's constant)
LOOPBACK_CLIENT_ID = "LOOPBACK_CLIENT_ID"

#: apprtc's rooms: two clients
APPRTC_CAPACITY = 2
#: the largest group call: in a full mesh each member sends its video to every other one
MAX_MESH_CAPACITY = 6

#: room and client ids: letters, digits, ``-`` and ``_``, 1 to 64 of them
ID_PATTERN = "[A-Za-z0-9_-]{1,64}"
_ID_RE = re.compile(ID_PATTERN + r"\Z")


class Result(str, enum.Enum):
    """apprtc's result strings (``constants.py``)."""

    SUCCESS = "SUCCESS"
    FULL = "FULL"
    UNKNOWN_ROOM = "UNKNOWN_ROOM"
    UNKNOWN_CLIENT = "UNKNOWN_CLIENT"
    DUPLICATE_CLIENT = "DUPLICATE_CLIENT"
    ERROR = "ERROR"
    INVALID_REQUEST = "INVALID_REQUEST"


def is_valid_id(text: str) -> bool:
    """Whether ``text`` may be a room or client id."""
    return bool(_ID_RE.match(text))


def new_client_id() -> str:
    """Eight random decimal digits, as apprtc makes them."""
    return "".join(secrets.choice("0123456789") for _ in range(8))


def _stored_bytes(room: Room) -> int:
    """UTF-8 bytes of every message stored in ``room``."""
    return sum(len(m.encode("utf-8")) for member in room.members.values() for m in member.messages)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class JoinResult:
    """What a join gave; ``client_id`` and the rest only on SUCCESS."""

    result: Result
    client_id: str = ""
    is_initiator: bool = False
    messages: tuple[str, ...] = ()
    #: the room went from empty to existing with this join
    created: bool = False
    error: str = ""
    #: a group call room (see the module docstring)
    mesh: bool = False
    #: group calls: the members already in the room, in join order
    members: tuple[str, ...] = ()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class MessageResult:
    """What ``/message`` gave: stored (SUCCESS, forward False) or to forward."""

    result: Result
    forward: bool = False
    error: str = ""


class RoomRegistry:
    """Rooms and their members; apprtc's room server without memcache.

    :param storage: where rooms live.
    :param capacity: members of a group call room (``[rooms] capacity``); apprtc's rooms hold two.
    :param room_ttl_s: a room unchanged for this long is removed.
    :param max_rooms: a join that would create one more room gets ERROR.
    :param max_stored_messages: messages stored for a client waiting alone.
    :param max_message_bytes: the largest message accepted (UTF-8 bytes).
    :param max_stored_bytes: UTF-8 bytes stored in one room (also bounds a joiner's ``/join`` answer).
    :param buffers: the process-wide byte ceiling (shared with the signaling hub).
    :param make_client_id: the client id source (tests pass their own).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        capacity: int = 2,
        room_ttl_s: float = 86400,
        max_rooms: int = 10000,
        max_stored_messages: int = 256,
        max_message_bytes: int = 65536,
        max_stored_bytes: int = 1 << 20,
        make_client_id: Callable[[], str] = new_client_id,
        buffers: ByteBudget | None = None,
    ) -> None:
        self.storage = storage
        self.capacity = capacity
        self.room_ttl_s = room_ttl_s
        self.max_rooms = max_rooms
        self.max_stored_messages = max_stored_messages
        self.max_message_bytes = max_message_bytes
        self.max_stored_bytes = max_stored_bytes
        #: the process-wide ceiling on held message bytes (shared with the hub)
        self.buffers = buffers if buffers is not None else ByteBudget(1 << 62)
        self._make_client_id = make_client_id
        self._next_sweep: float | None = None

    # -- queries -------------------------------------------------------------

    def occupancy(self, room_id: str) -> int:
        """How many clients are in the room (0 if there is none)."""
        room = self.storage.get_room(room_id)
        return len(room.members) if room else 0

    def capacity_of(self, room: Room | None) -> int:
        """How many members ``room`` may hold (a new room: an apprtc one)."""
        if room is not None and room.mesh:
            return self.capacity
        return min(APPRTC_CAPACITY, self.capacity)

    def is_full(self, room_id: str, *, mesh: bool = False) -> bool:
        """Whether a join (a group-call client's with ``mesh``) would get FULL."""
        room = self.storage.get_room(room_id)
        if room is None:
            return False
        if room.mesh and not mesh:
            return True
        return len(room.members) >= self.capacity_of(room)

    def is_mesh(self, room_id: str) -> bool:
        """Whether the room is a group call room."""
        room = self.storage.get_room(room_id)
        return room is not None and room.mesh

    def is_member(self, room_id: str, client_id: str) -> bool:
        """Whether the room server let this client into this room."""
        room = self.storage.get_room(room_id)
        return room is not None and client_id in room.members

    def room_count(self) -> int:
        """How many rooms exist."""
        return self.storage.room_count()

    # -- inputs --------------------------------------------------------------

    def handle_join(self, room_id: str, *, loopback: bool = False, mesh: bool = False, now: float) -> JoinResult:
        """Add a new client to a room (creating it), as ``POST /join`` does.

        The first client is the initiator.  A later one takes over the
        initiator's stored messages, which are then emptied.  With
        ``loopback`` an empty room also gets :data:`LOOPBACK_CLIENT_ID`.

        :param mesh: a group-call client (our page, ``?mesh=1``): a room it
            makes is a mesh room when ``capacity`` is above two; it may join
            an apprtc room too (and is then an apprtc client there).
        """
        room = self.storage.get_room(room_id)
        created = room is None
        if room is None:
            if self.storage.room_count() >= self.max_rooms:
                return JoinResult(Result.ERROR, error="too many rooms")
            room = Room(room_id, expires_at=now + self.room_ttl_s,
                        mesh=mesh and not loopback and self.capacity > APPRTC_CAPACITY)
        if room.mesh and not mesh:
            return JoinResult(Result.FULL, error="this room is a group call of the webrtcstack page")
        if len(room.members) >= self.capacity_of(room):
            return JoinResult(Result.FULL)
        client_id = self._make_client_id()
        if client_id in room.members:
            return JoinResult(Result.DUPLICATE_CLIENT)
        messages: list[str] = []
        present = tuple(room.members)
        if not room.members:
            is_initiator = True
            room.members[client_id] = Member(client_id, True)
            if loopback:
                room.members[LOOPBACK_CLIENT_ID] = Member(LOOPBACK_CLIENT_ID, False)
        else:
            is_initiator = False
            for other in room.members.values():
                messages.extend(other.messages)
                self._drop_stored(other)
            room.members[client_id] = Member(client_id, False)
        self._touch(room, now)
        return JoinResult(Result.SUCCESS, client_id, is_initiator, tuple(messages), created, mesh=room.mesh,
                          members=present if room.mesh else ())

    def handle_message(self, room_id: str, client_id: str, message: str, *, now: float) -> MessageResult:
        """Store a message from a client alone in its room, or say to forward it."""
        room = self.storage.get_room(room_id)
        if room is None:
            return MessageResult(Result.UNKNOWN_ROOM)
        member = room.members.get(client_id)
        if member is None:
            return MessageResult(Result.UNKNOWN_CLIENT)
        if len(message.encode("utf-8")) > self.max_message_bytes:
            return MessageResult(Result.ERROR, error=f"message too large: at most {self.max_message_bytes} bytes")
        if len(room.members) >= 2 or room.mesh:
            return MessageResult(Result.SUCCESS, forward=True)
        if len(member.messages) >= self.max_stored_messages:
            return MessageResult(Result.ERROR, error=f"too many stored messages: at most {self.max_stored_messages}")
        size = len(message.encode("utf-8"))
        if _stored_bytes(room) + size > self.max_stored_bytes:
            return MessageResult(Result.ERROR, error=f"too many stored bytes: at most {self.max_stored_bytes} a room")
        if not self.buffers.take(size):
            return MessageResult(Result.ERROR, error="the server holds too many messages; try again shortly")
        member.messages.append(message)
        self._touch(room, now)
        return MessageResult(Result.SUCCESS)

    def handle_leave(self, room_id: str, client_id: str, *, now: float) -> Result:
        """Remove a client (and the loopback pseudo client); the one left becomes initiator."""
        room = self.storage.get_room(room_id)
        if room is None:
            return Result.UNKNOWN_ROOM
        if client_id not in room.members:
            return Result.UNKNOWN_CLIENT
        self._drop_stored(room.members.pop(client_id))
        loopback = room.members.pop(LOOPBACK_CLIENT_ID, None)
        if loopback is not None:
            self._drop_stored(loopback)
        if not room.members:
            self.storage.delete_room(room_id)
            return Result.SUCCESS
        for other in room.members.values():
            other.is_initiator = True
            break
        self._touch(room, now)
        return Result.SUCCESS

    def handle_timers(self, *, now: float, in_call: Callable[[str], bool] | None = None) -> list[str]:
        """Remove rooms unchanged for ``room_ttl_s``; return their ids.

        :param in_call: says whether a room has a call in progress (two
            members with live signaling sockets).  Such a room is not removed when
            its time runs out: its expiry is pushed back by ``room_ttl_s``, so
            a call is never pulled from under its members however long it
            lasts, and the room goes ``room_ttl_s`` after the call ends.
        """
        if self._next_sweep is None or now < self._next_sweep:
            return []
        expired = []
        for room in list(self.storage.iter_rooms()):
            if room.expires_at <= now:
                if in_call is not None and in_call(room.room_id):
                    self._touch(room, now)
                    continue
                for member in room.members.values():
                    self._drop_stored(member)
                self.storage.delete_room(room.room_id)
                expired.append(room.room_id)
        self._plan_sweep(now)
        return expired

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timers` next has work (None: no rooms)."""
        return self._next_sweep

    def touch(self, room_id: str, *, now: float) -> None:
        """Push back a room's expiry (signaling traffic counts as a change)."""
        room = self.storage.get_room(room_id)
        if room is not None:
            room.expires_at = now + self.room_ttl_s
            self.storage.put_room(room)

    # -- internals -----------------------------------------------------------

    def _drop_stored(self, member: Member) -> None:
        """Forget a member's stored messages and give their bytes back to the process budget."""
        self.buffers.release(sum(len(m.encode("utf-8")) for m in member.messages))
        member.messages.clear()

    def _touch(self, room: Room, now: float) -> None:
        room.expires_at = now + self.room_ttl_s
        self.storage.put_room(room)
        if self._next_sweep is None:
            self._plan_sweep(now)

    def _plan_sweep(self, now: float) -> None:
        # Expiry is checked by a sweep rather than a timer per room: rooms
        # change on every stored message and a heap of stale entries would
        # grow with traffic.  A room goes at most a sweep interval late.
        if self.storage.room_count() == 0:
            self._next_sweep = None
        else:
            self._next_sweep = now + min(self.room_ttl_s, 60.0)
