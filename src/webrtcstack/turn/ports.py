# -*- test-case-name: tests.turn.test_ports -*-
"""The relay port pool: random free ports from ``relay_ports``.

Ports are drawn uniformly at random (``secrets``) so relayed addresses are not
predictable (RFC 8656 §7.2 asks for that).  The draws come from
:class:`BatchedRandbelow`: one ``secrets.token_bytes`` call (one
``getrandom`` system call) per 64 draws instead of one per draw, with
rejection sampling so every port stays equally likely.  Taking and returning a port is
O(1): the free ports live in a list, and a dict remembers each one's index so
it can be swapped out.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable

__all__ = ["PortPool", "BatchedRandbelow"]

_WORDS = 1 << 32


class BatchedRandbelow:
    """``randbelow(n)`` (uniform in ``[0, n)``) from batches of ``secrets`` bytes.

    Each draw takes one 32-bit word; a word at or above the largest multiple
    of ``n`` below 2**32 is thrown away, so ``word % n`` has no bias.  Larger
    ``n`` fall back to :func:`secrets.randbelow`.

    :param token_bytes: the source of random bytes (``secrets.token_bytes``).
    :param batch: words fetched per call of ``token_bytes``.
    """

    def __init__(self, token_bytes: Callable[[int], bytes] = secrets.token_bytes, batch: int = 64) -> None:
        self._token_bytes = token_bytes
        self._unpack = struct.Struct(f"<{batch}I").unpack
        self._batch = batch
        self._words: list[int] = []

    def __call__(self, n: int) -> int:
        if n <= 0:
            raise ValueError("randbelow needs a positive bound")
        if n > _WORDS:
            return secrets.randbelow(n)
        limit = _WORDS - _WORDS % n
        words = self._words
        while True:
            if not words:
                words.extend(self._unpack(self._token_bytes(4 * self._batch)))
            word = words.pop()
            if word < limit:
                return word % n


class PortPool:
    """A set of free UDP ports in ``[low, high]``.

    :param randbelow: a :class:`BatchedRandbelow` over ``secrets`` unless a test passes another.
    """

    def __init__(self, low: int, high: int, randbelow: Callable[[int], int] | None = None) -> None:
        self.low = low
        self.high = high
        self._randbelow = randbelow if randbelow is not None else BatchedRandbelow()
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
