"""TURN across nodes, sans-IO: the other nodes' allocations, alternates and ICE URLs.

Allocations stay on the node that made them.  What crosses nodes is each
node's *TURN report*, carried in its lease record (see
:mod:`webrtcstack.cluster.node`) and so refreshed at every renewal:

- ``allocations`` and ``turn_users`` (allocations per user name): the
  cluster-wide ``[turn] user_quota`` and ``total_quota`` add these to the
  node's own live counts.  A reaped node's record expires with its lease, so
  its counts leave the sums with it;
- ``turn_accepting``: whether the node can take an allocation now (not
  draining, relay ports free);
- ``turn_servers``: ``[transport, ip, port]`` of each address a client may be
  sent to with 300 Try Alternate (RFC 8489 §10, ALTERNATE-SERVER);
- ``turn_urls`` and ``stun_urls``: what ``/v1alpha/iceconfig`` hands out
  for the node.

:class:`TurnClusterView` turns the live records into the three answers the
TURN engine and the room server need.  This module is part of the sans-IO core.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TurnClusterView", "turn_report"]


def turn_report(allocations: int, users: Mapping[str, int], accepting: bool,
                servers: Iterable[tuple[str, str, int]], turn_urls: list[str], stun_urls: list[str]) -> dict[str, Any]:
    """The TURN part of a node's lease record (see the module docstring)."""
    return {"allocations": allocations, "turn_users": {u: n for u, n in users.items() if n},
            "turn_accepting": accepting, "turn_servers": [list(s) for s in servers],
            "turn_urls": turn_urls, "stun_urls": stun_urls}


def _family(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None  # a name: ALTERNATE-SERVER carries an address only


class TurnClusterView:
    """The other live nodes' TURN reports, as of this node's last lease renewal.

    :param node_id: this node's id (its own record is left out: its live
        counts are the engine's own).
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        #: allocations on the other live nodes
        self.total = 0
        self._users: dict[str, int] = {}
        #: the other live nodes' records, least loaded first
        self._others: list[tuple[str, dict[str, Any]]] = []
        #: cluster-wide allocations including this node's, as of the last update
        self.cluster_total = 0

    def update(self, nodes: Mapping[str, Mapping[str, Any]], own_allocations: int = 0) -> None:
        """Take the live nodes' records (node id -> ``{"record": {...}}``) from a renewal."""
        total = 0
        users: dict[str, int] = {}
        others = []
        for node_id, info in nodes.items():
            if node_id == self.node_id:
                continue
            record = info.get("record") or {}
            count = record.get("allocations")
            total += count if isinstance(count, int) and count > 0 else 0
            per_user = record.get("turn_users")
            if isinstance(per_user, dict):
                for user, n in per_user.items():
                    if isinstance(n, int) and n > 0:
                        users[user] = users.get(user, 0) + n
            others.append((node_id, dict(record)))
        others.sort(key=lambda item: (_load(item[1]), item[0]))
        self.total = total
        self._users = users
        self._others = others
        self.cluster_total = total + own_allocations

    def user_count(self, user: str) -> int:
        """Allocations ``user`` holds on the other nodes."""
        return self._users.get(user, 0)

    def alternate(self, transport: str, family: int) -> tuple[str, int] | None:
        """A live node that can take an allocation: its address for ``transport`` ("udp", "tcp") and IP ``family``.

        The least loaded such node; None when no other node has room.
        """
        for _node_id, record in self._others:
            if not record.get("turn_accepting"):
                continue
            for server in record.get("turn_servers") or ():
                if (isinstance(server, list) and len(server) == 3 and server[0] == transport
                        and isinstance(server[1], str) and _family(server[1]) == family
                        and isinstance(server[2], int)):
                    return server[1], server[2]
        return None

    def ice_urls(self, own_load: int, own_accepting: bool, own: tuple[list[str], list[str]],
                 limit: int) -> tuple[list[str], list[str]]:
        """``(turn_urls, stun_urls)`` of the ``limit`` least loaded nodes that accept allocations.

        This node comes first among equal loads; a node that is full or
        draining is left out (this node too, unless no other node has room).
        """
        candidates: list[tuple[int, int, str, list[str], list[str]]] = []
        for node_id, record in self._others:
            turn = [u for u in record.get("turn_urls") or () if isinstance(u, str)]
            stun = [u for u in record.get("stun_urls") or () if isinstance(u, str)]
            if record.get("turn_accepting") and (turn or stun):
                candidates.append((_load(record), 1, node_id, turn, stun))
        if own_accepting or not candidates:
            candidates.append((own_load, 0, "", own[0], own[1]))
        candidates.sort(key=lambda c: c[:3])
        turn_out: list[str] = []
        stun_out: list[str] = []
        for _load_, _own, _id, turn, stun in candidates[:max(1, limit)]:
            turn_out += [u for u in turn if u not in turn_out]
            stun_out += [u for u in stun if u not in stun_out]
        return turn_out, stun_out


def _load(record: Mapping[str, Any]) -> int:
    count = record.get("allocations")
    return count if isinstance(count, int) and count >= 0 else 0
