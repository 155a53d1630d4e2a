"""Token buckets: the one rate limiter of the core (TURN bandwidth and replies, signaling messages)."""

from __future__ import annotations

__all__ = ["TokenBucket"]


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

    def take(self, amount: float, now: float) -> bool:
        """Remove ``amount`` tokens if that many are there; say whether it did."""
        elapsed = now - self.updated_at
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated_at = now
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False
