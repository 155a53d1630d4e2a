# -*- test-case-name: tests.turn.test_ports -*-
"""The relay port pool: random free ports from ``relay_ports``.

Ports are drawn uniformly at random (``secrets``) so relayed addresses are not
predictable (RFC 8656 §7.2 asks for that).  Taking and returning a port is
O(1): the free ports live in a list, and a dict remembers each one's index so
it can be swapped out.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

__all__ = ["PortPool"]


class PortPool:
    """A set of free UDP ports in ``[low, high]``.

    :param randbelow: ``secrets.randbelow`` unless a test passes another.
    """

    def __init__(self, low: int, high: int, randbelow: Callable[[int], int] = secrets.randbelow) -> None:
        self.low = low
        self.high = high
        self._randbelow = randbelow
        self._free: list[int] = list(range(low, high + 1))
        self._index: dict[int, int] = {port: i for i, port in enumerate(self._free)}

    @property
    def size(self) -> int:
        """How many ports the range holds."""
        return self.high - self.low + 1

    def free_count(self) -> int:
        """How many ports are free now."""
        return len(self._free)

    def is_free(self, port: int) -> bool:
        """True if ``port`` is in the pool and not taken."""
        return port in self._index

    def _remove(self, port: int) -> None:
        i = self._index.pop(port)
        last = self._free.pop()
        if last != port:
            self._free[i] = last
            self._index[last] = i

    def take(self) -> int | None:
        """A random free port, or None when the pool is empty."""
        if not self._free:
            return None
        port = self._free[self._randbelow(len(self._free))]
        self._remove(port)
        return port

    def take_specific(self, port: int) -> bool:
        """Take ``port`` if it is free."""
        if port not in self._index:
            return False
        self._remove(port)
        return True

    def take_even_pair(self, tries: int = 64) -> int | None:
        """An even port ``p`` with ``p + 1`` also free; both are taken.

        Random draws first, then a scan, so a nearly full pool still finds a pair.
        """
        for _ in range(min(tries, len(self._free))):
            port = self._free[self._randbelow(len(self._free))] & ~1
            if port in self._index and port + 1 in self._index:
                self._remove(port)
                self._remove(port + 1)
                return port
        for port in sorted(self._index):
            if port % 2 == 0 and port + 1 in self._index:
                self._remove(port)
                self._remove(port + 1)
                return port
        return None

    def release(self, port: int) -> None:
        """Return ``port`` to the pool (a port already free or out of range is ignored)."""
        if self.low <= port <= self.high and port not in self._index:
            self._index[port] = len(self._free)
            self._free.append(port)
