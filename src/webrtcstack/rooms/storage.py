"""Where room and signaling state lives: one small interface, in memory for now.

The room registry (:mod:`webrtcstack.rooms.model`) and the signaling hub
(:mod:`webrtcstack.signaling.hub`) keep every piece of shared state in records
fetched from a :class:`Storage` and written back after each change:

- :class:`Room` (the room server's view): who joined, who is the initiator,
  the messages stored for a client waiting alone, when the room expires;
- :class:`Channel` (the signaling view of the same room): which clients have
  a live WebSocket, the messages queued per sending client, when a client with
  no socket is to be removed.

Delivery to a socket is not state: the hub returns ``Deliver`` effects and the
shell that owns the socket sends the frame.  With ``[redis]`` a room's two
records live in one Redis key; the shell locks the room, loads them into a
:class:`webrtcstack.cluster.records.ClusterStorage` (this interface, holding
that one room), runs the hub, and writes them back, turning ``Deliver`` for a
socket on another node into an entry in that node's inbox (docs/scaling.md).
Every method here stays synchronous: the I/O happens before and after.

This module is part of the sans-IO core.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import attr

__all__ = ["Member", "Room", "Peer", "Channel", "Storage", "MemoryStorage"]


@attr.s(slots=True, auto_attribs=True)
class Member:
    """A client the room server let into a room."""

    client_id: str
    is_initiator: bool
    #: messages POSTed while alone in the room, verbatim, oldest first
    messages: list[str] = attr.ib(factory=list)


@attr.s(slots=True, auto_attribs=True)
class Room:
    """A room as the room server sees it (apprtc's ``Room``)."""

    room_id: str
    expires_at: float
    #: client id -> member, in join order
    members: dict[str, Member] = attr.ib(factory=dict)
    #: a group call (our page's extension, see docs/rooms.md): up to ``[rooms] capacity`` members,
    #: presence events and addressed messages; False: apprtc's two-person room
    mesh: bool = False


@attr.s(slots=True, auto_attribs=True)
class Peer:
    """A client as signaling sees it (collider's ``client``)."""

    client_id: str
    #: an opaque token of the socket bound to this client, or None
    conn: object | None = None
    #: messages this client sent while nobody could take them, oldest first
    queue: list[str] = attr.ib(factory=list)
    #: UTF-8 bytes in ``queue``
    queued_bytes: int = 0
    #: when to remove this client if it still has no socket (None: never)
    remove_at: float | None = None
    #: the client left the room (POST /leave); it may still send its last
    #: messages (``bye``) but counts for nothing and is removed with its socket
    left: bool = False
    #: never removed by a timer and never reported to the room server
    #: (the ``debug=loopback`` pseudo client)
    pseudo: bool = False
    #: group calls: frames addressed to this client while it had no socket, oldest first (sent on register)
    inbox: list[str] = attr.ib(factory=list)
    #: UTF-8 bytes in ``inbox``
    inbox_bytes: int = 0
    #: group calls: the others were told this client joined (its first register)
    announced: bool = False


@attr.s(slots=True, auto_attribs=True)
class Channel:
    """The signaling clients of one room."""

    room_id: str
    peers: dict[str, Peer] = attr.ib(factory=dict)


class Storage(Protocol):
    """What the room registry and the signaling hub need from a store."""

    def get_room(self, room_id: str) -> Room | None:
        """The room, or None if there is none."""

    def put_room(self, room: Room) -> None:
        """Create or replace a room."""

    def delete_room(self, room_id: str) -> None:
        """Remove a room; no error if it is gone."""

    def room_count(self) -> int:
        """How many rooms exist."""

    def iter_rooms(self) -> Iterator[Room]:
        """Every room (for the expiry sweep); the caller may delete while iterating."""

    def get_channel(self, room_id: str) -> Channel | None:
        """The signaling clients of a room, or None."""

    def put_channel(self, channel: Channel) -> None:
        """Create or replace a channel."""

    def delete_channel(self, room_id: str) -> None:
        """Remove a channel; no error if it is gone."""

    def channel_count(self) -> int:
        """How many channels exist."""


class MemoryStorage:
    """:class:`Storage` in two dicts; records are shared, so ``put`` is cheap."""

    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}
        self._channels: dict[str, Channel] = {}

    def get_room(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def put_room(self, room: Room) -> None:
        self._rooms[room.room_id] = room

    def delete_room(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)

    def room_count(self) -> int:
        return len(self._rooms)

    def iter_rooms(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def get_channel(self, room_id: str) -> Channel | None:
        return self._channels.get(room_id)

    def put_channel(self, channel: Channel) -> None:
        self._channels[channel.room_id] = channel

    def delete_channel(self, room_id: str) -> None:
        self._channels.pop(room_id, None)

    def channel_count(self) -> int:
        return len(self._channels)
