# -*- test-case-name: tests.turn.test_limits -*-
"""Token buckets: the one rate limiter (TURN bandwidth and 401 replies, HTTP writes per address)."""

from __future__ import annotations

__all__ = ["TokenBucket", "ReplyRateLimiter", "ByteBudget"]


class TokenBucket:
    """A classic token bucket.

    :param rate: tokens added per second.
    :param burst: the most tokens held (and the starting amount).
    """

    __slots__ = ("rate", "burst", "tokens", "updated_at")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated_at = now

    def take(self, amount: float, now: float, bonus: float = 0.0) -> bool:
        """Remove ``amount`` tokens if that many are there; say whether it did.

        :param bonus: tokens added after the refill, past ``burst`` if need
            be (once, for what a client sent while the process was stalled:
            it arrives all at once and should cost what it cost as sent).
        """
        elapsed = now - self.updated_at
        if elapsed > 0:
            if self.tokens < self.burst:  # a refill fills up to burst; it never takes back a bonus
                self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated_at = now
        self.tokens += bonus
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def charge(self, amount: float, now: float) -> float:
        """Remove ``amount`` tokens even if that leaves a debt; the seconds until the debt is paid (0: none).

        For what cannot be dropped (bytes on a TCP pipe): the sender is paused that long instead.
        """
        self.take(0.0, now)
        self.tokens -= amount
        return -self.tokens / self.rate if self.tokens < 0 else 0.0


class ReplyRateLimiter:
    """Limits replies per source host (e.g. 401 challenges) with bounded memory.

    :param per_second: replies allowed per second per host (also the burst).
    :param max_hosts: hosts tracked at once; past this, hosts idle for a
        second (whose bucket is full again anyway) are forgotten, and if that is
        not enough the table starts over.
    """

    def __init__(self, per_second: float, max_hosts: int = 65536) -> None:
        self.per_second = per_second
        self.max_hosts = max_hosts
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, host: str, now: float) -> bool:
        """True if a reply to ``host`` may be sent now."""
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= self.max_hosts:
                self.prune(now)
            bucket = self._buckets[host] = TokenBucket(self.per_second, self.per_second, now)
        return bucket.take(1, now)

    def prune(self, now: float) -> None:
        """Forget hosts whose bucket has refilled."""
        idle = 1.0
        self._buckets = {h: b for h, b in self._buckets.items() if now - b.updated_at < idle}
        if len(self._buckets) >= self.max_hosts:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


class ByteBudget:
    """Bytes held for clients (queued and stored messages) across the process, with a ceiling.

    Shared by the signaling hub and the room registry, so no mix of clients,
    rooms and routes can make the process hold more than ``limit`` bytes of
    their messages.

    :param limit: the most bytes held at once.
    """

    __slots__ = ("limit", "held", "refused")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        #: takes refused because the ceiling was reached
        self.refused = 0

    def take(self, amount: int) -> bool:
        """Hold ``amount`` more bytes if the ceiling allows; say whether it did."""
        if self.held + amount > self.limit:
            self.refused += 1
            return False
        self.held += amount
        return True

    def release(self, amount: int) -> None:
        """``amount`` bytes are no longer held."""
        self.held = max(0, self.held - amount)
