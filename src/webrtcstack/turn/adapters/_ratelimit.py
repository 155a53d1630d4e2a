"""A log line at most once per interval (shell helper for the adapters)."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel


class RateLimitedLog:
    """Emit a warning at most once per ``interval_s``, counting what was suppressed.

    Packet-level problems (malformed datagrams, garbage on a stream, failed
    authentication) must never log per packet: a flood would become a
    disk-filling attack.

    :param level: the level of the lines (``warn`` unless told).
    """

    def __init__(self, log: Logger, clock: IReactorTime, interval_s: float = 10.0,
                 level: LogLevel = LogLevel.warn) -> None:
        self.log = log
        self.clock = clock
        self.interval_s = interval_s
        self.level = level
        self._next_at = float("-inf")
        self._suppressed = 0

    def warn(self, format: str, **kwargs: Any) -> None:
        """Log ``format`` (a twisted.logger format) now, or count it if we logged recently."""
        now = self.clock.seconds()
        if now < self._next_at:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        self._next_at = now + self.interval_s
        self.log.emit(self.level, format + " ({suppressed} similar suppressed)", suppressed=suppressed, **kwargs)
