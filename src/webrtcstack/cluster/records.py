"""A room's records as Redis keeps them, and the storage the hub runs one operation on (sans-IO).

With ``[redis]``, a room's :class:`~webrtcstack.rooms.storage.Room` and
:class:`~webrtcstack.rooms.storage.Channel` live together in one Redis key,
as the JSON :func:`dump` writes.  To change a room, the shell locks it,
loads that key into a :class:`ClusterStorage`, runs the unchanged room
registry and hub on it (the same code as the single process), and writes
the result back.

A socket is stored as a *token* ``<node id>/<incarnation>/<n>``: the node
that holds it turns its own tokens back into its socket objects
(``resolve``); any other node keeps the string, and a delivery to it goes to
that node's inbox.

This module is part of the sans-IO core.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from webrtcstack.rooms.storage import Channel, Member, Peer, Room

__all__ = ["dump", "load", "ClusterStorage", "token_node"]


def token_node(token: str) -> str:
    """The node id a socket token belongs to."""
    return token.split("/", 1)[0]


def dump(room: Room | None, channel: Channel | None, token_of: Callable[[object], str]) -> str:
    """The JSON of a room's two records ("" when both are gone)."""
    if room is None and channel is None:
        return ""
    out: dict[str, Any] = {}
    if room is not None:
        out["room"] = {"expires_at": room.expires_at,
                       "members": [[m.client_id, m.is_initiator, m.messages] for m in room.members.values()]}
        if room.mesh:
            out["room"]["mesh"] = True
    if channel is not None:
        out["peers"] = [[p.client_id, None if p.conn is None else token_of(p.conn), p.queue, p.queued_bytes,
                         p.remove_at, p.left, p.pseudo] + ([p.inbox, p.inbox_bytes, p.announced]
                                                          if p.inbox or p.announced else [])
                        for p in channel.peers.values()]
    return json.dumps(out, separators=(",", ":"))


def load(room_id: str, text: str | bytes, resolve: Callable[[str], object]) -> tuple[Room | None, Channel | None]:
    """The records :func:`dump` wrote (``resolve`` maps a token to this node's socket, or returns it as it is)."""
    if not text:
        return None, None
    data = json.loads(text)
    room = channel = None
    if "room" in data:
        r = data["room"]
        room = Room(room_id, float(r["expires_at"]),
                    {cid: Member(cid, bool(init), list(msgs)) for cid, init, msgs in r["members"]},
                    bool(r.get("mesh", False)))
    if "peers" in data:
        channel = Channel(room_id, {item[0]: _peer(item, resolve) for item in data["peers"]})
    return room, channel


def _peer(item: list[Any], resolve: Callable[[str], object]) -> Peer:
    """A peer from its record: seven fields, and three more for a group call member (older records have seven)."""
    cid, conn, queue, qbytes, remove_at, left, pseudo = item[:7]
    inbox, inbox_bytes, announced = item[7:10] if len(item) >= 10 else ([], 0, False)
    return Peer(cid, None if conn is None else resolve(conn), list(queue), int(qbytes),
                None if remove_at is None else float(remove_at), bool(left), bool(pseudo),
                list(inbox), int(inbox_bytes), bool(announced))


class ClusterStorage:
    """:class:`~webrtcstack.rooms.storage.Storage` holding the one room an operation runs on.

    :meth:`begin` installs the loaded records, the hub and registry run,
    :meth:`end` hands back what they left.  Outside an operation no room is
    visible, and the counts are the cluster's as of the last load.
    """

    def __init__(self) -> None:
        self._room_id: str | None = None
        self._room: Room | None = None
        self._channel: Channel | None = None
        #: rooms in the whole cluster at the last load
        self.cluster_rooms = 0
        self._had_room = False

    #: whether the operation wrote anything (the room registry and hub write back every change they make)
    dirty = False

    def begin(self, room_id: str, room: Room | None, channel: Channel | None, cluster_rooms: int) -> None:
        self._room_id, self._room, self._channel = room_id, room, channel
        self.dirty = False
        self._had_room = room is not None
        self.cluster_rooms = cluster_rooms

    def end(self) -> tuple[Room | None, Channel | None]:
        room, channel = self._room, self._channel
        if self._had_room and room is None:
            self.cluster_rooms = max(0, self.cluster_rooms - 1)
        elif not self._had_room and room is not None:
            self.cluster_rooms += 1
        self._room_id = self._room = self._channel = None
        return room, channel

    def _mine(self, room_id: str) -> bool:
        return room_id == self._room_id

    def get_room(self, room_id: str) -> Room | None:
        return self._room if self._mine(room_id) else None

    def put_room(self, room: Room) -> None:
        if self._mine(room.room_id):
            self._room = room
            self.dirty = True

    def delete_room(self, room_id: str) -> None:
        if self._mine(room_id):
            self._room = None
            self.dirty = True

    def room_count(self) -> int:
        return self.cluster_rooms + (1 if self._room is not None and not self._had_room else 0) \
            - (1 if self._room is None and self._had_room else 0)

    def iter_rooms(self) -> Iterator[Room]:
        return iter([self._room] if self._room is not None else [])

    def get_channel(self, room_id: str) -> Channel | None:
        return self._channel if self._mine(room_id) else None

    def put_channel(self, channel: Channel) -> None:
        if self._mine(channel.room_id):
            self._channel = channel
            self.dirty = True

    def delete_channel(self, room_id: str) -> None:
        if self._mine(room_id):
            self._channel = None
            self.dirty = True

    def channel_count(self) -> int:
        return self.cluster_rooms
