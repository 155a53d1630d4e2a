"""Tests for the TURN driver's logging of authentication failures (no sockets; time is a Clock)."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.turn.adapters import driver as driver_module
from webrtcstack.turn.adapters.driver import TurnDriver

from .support import Client, make_engine


class AuthFailureLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.patch(driver_module, "log", Logger(observer=self.events.append))
        self.clock = Clock()
        self.engine, _ = make_engine()
        self.driver = TurnDriver(self.engine, self.clock, log_interval_s=10.0)

    def lines(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("reason") == reason]

    def test_one_line_per_reason_per_interval(self) -> None:
        """Many failures with one reason log one warning per interval, the next one saying how many were suppressed."""
        for i in range(5):
            Client(self.engine, client=("198.51.100.7", 41000 + i), password="wrong").allocate(now=self.clock.seconds())
        self.assertEqual(len(self.lines("bad_integrity")), 1)
        first = self.lines("bad_integrity")[0]
        self.assertEqual((first["log_level"], first["suppressed"], first["client"]),
                         (LogLevel.warn, 0, "198.51.100.7"))
        self.clock.advance(10)
        Client(self.engine, client=("198.51.100.8", 1), password="wrong").allocate(now=self.clock.seconds())
        self.assertEqual([e["suppressed"] for e in self.lines("bad_integrity")], [0, 4])

    def test_reasons_are_separate(self) -> None:
        """Each reason gets its own line; the routine 401 challenge is logged at debug only."""
        Client(self.engine, password="wrong").allocate()
        Client(self.engine, client=("198.51.100.9", 1), username="mallory").allocate()
        self.assertEqual(len(self.lines("bad_integrity")), 1)
        self.assertEqual(len(self.lines("unknown_user")), 1)
        self.assertEqual({e["log_level"] for e in self.lines("no_credentials")}, {LogLevel.debug})
        self.assertFalse([e for e in self.events if e["log_level"] >= LogLevel.info
                          and e.get("reason") == "no_credentials"])
