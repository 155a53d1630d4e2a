"""A node's identity and its lease, sans-IO.

Each stack process sharing one Redis is a *node*.  It holds a lease: a key
that lives ``lease_seconds`` and that the node renews every
``renew_seconds``.  A node whose lease lapsed is dead to the others.  A node
that could not renew for longer than the lease assumes it was declared dead
(*fenced*): it takes a new *incarnation* before it claims its lease again,
so nothing it held before can be mistaken for what it holds now.

:class:`NodeLease` decides when to renew and whether the node is fenced;
the shell (:mod:`webrtcstack.cluster.node`) talks to Redis.

This module is part of the sans-IO core.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

__all__ = ["default_node_id", "NodeLease"]


def default_node_id(hostname: str, listen: Iterable[str]) -> str:
    """``<host>-<8 hex digits>`` from the host name and the sorted listen addresses.

    Two processes on one host cannot listen on the same addresses, so the
    id is unique per process and the same across restarts of one process.
    """
    digest = hashlib.sha256("\n".join(sorted(listen)).encode()).hexdigest()[:8]
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in hostname)[:40] or "node"
    return f"{host}-{digest}"


class NodeLease:
    """When this node renews its lease, and whether it must fence itself.

    :param node_id: the node's id (``[redis] node_id``).
    :param lease_s: how long a lease lives unrenewed (``[redis] lease_seconds``).
    :param renew_s: how often it is renewed.
    """

    def __init__(self, node_id: str, *, lease_s: float, renew_s: float) -> None:
        self.node_id = node_id
        self.lease_s = lease_s
        self.renew_s = renew_s
        #: a fresh random token for each life of the node
        self.incarnation = secrets.token_hex(8)
        #: the incarnation a renewal may take over from (the node's previous life)
        self.previous: str = ""
        #: when the lease was last renewed (None: never)
        self.renewed_at: float | None = None
        #: times the node fenced itself
        self.fences = 0

    def renewed(self, now: float) -> None:
        """Redis accepted a renewal at ``now``."""
        self.renewed_at = now

    def held(self, now: float) -> bool:
        """Whether the lease is surely still ours (renewed within its lifetime)."""
        return self.renewed_at is not None and now - self.renewed_at < self.lease_s

    def fence_if_lapsed(self, now: float) -> bool:
        """Before a renewal: if the lease lapsed, take a new incarnation; say whether it did.

        A lapsed lease may have been reaped by another node; what this node
        held under the old incarnation must be re-asserted, not assumed.
        """
        if self.renewed_at is None or self.held(now):
            return False
        self.previous = self.incarnation
        self.incarnation = secrets.token_hex(8)
        self.renewed_at = None
        self.fences += 1
        return True

    def age(self, now: float) -> float | None:
        """Seconds since the last renewal."""
        return None if self.renewed_at is None else now - self.renewed_at
