# -*- test-case-name: tests.turn.test_transactions -*-
"""The transaction cache: a retransmitted request gets the same answer.

RFC 8489 §6.3.1 and RFC 8656 §7.2 ask a server to answer a retransmission
(same transaction ID from the same 5-tuple) with the response it already
sent, rather than act twice (a second Allocate would otherwise get 437).
Entries live ``lifetime_s`` (40 s covers the whole UDP retransmission
schedule of 39.5 s) and the table is bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["TransactionCache"]


class TransactionCache:
    """Responses by ``(five_tuple, transaction_id)``, oldest first."""

    def __init__(self, lifetime_s: float = 40.0, max_entries: int = 100_000) -> None:
        self.lifetime_s = lifetime_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()

    def get(self, key: Hashable, now: float) -> bytes | None:
        """The stored response for ``key`` if it has not expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def put(self, key: Hashable, response: bytes, now: float) -> None:
        """Remember ``response`` for ``lifetime_s``."""
        self._entries[key] = (now + self.lifetime_s, response)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def expire(self, now: float) -> None:
        """Drop entries whose time is up (oldest first, so this stops early)."""
        entries = self._entries
        while entries:
            key, (expires_at, _) = next(iter(entries.items()))
            if expires_at > now:
                break
            del entries[key]

    def next_deadline(self) -> float | None:
        """When the oldest entry expires."""
        if not self._entries:
            return None
        return next(iter(self._entries.values()))[0]

    def __len__(self) -> int:
        return len(self._entries)
