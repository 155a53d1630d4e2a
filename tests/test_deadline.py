"""The one deadline timer the shells keep for their sans-IO cores (webrtcstack.deadline)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.deadline import DeadlineTimer


class DeadlineTimerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.fired: list[tuple[float, float]] = []
        self.timer = DeadlineTimer(self.clock, lambda deadline: self.fired.append((deadline, self.clock.seconds())))

    def test_fires_once_at_the_deadline(self) -> None:
        """An armed timer calls back once, at its deadline, with that deadline."""
        self.timer.arm(5.0)
        self.clock.advance(4.9)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.fired, [(5.0, 5.0)])
        self.clock.advance(100)
        self.assertEqual(len(self.fired), 1)
        self.assertFalse(self.timer.active())

    def test_rearm_moves_one_call(self) -> None:
        """Arming again moves the one pending call (earlier or later); the same deadline keeps it."""
        self.timer.arm(5.0)
        self.timer.arm(5.0)
        self.timer.arm(2.0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(2.0)
        self.assertEqual(self.fired, [(2.0, 2.0)])
        self.timer.arm(3.0)
        self.timer.arm(9.0)
        self.clock.advance(7.0)
        self.assertEqual(self.fired, [(2.0, 2.0), (9.0, 9.0)])

    def test_past_deadline_fires_at_once_and_none_cancels(self) -> None:
        """A deadline already past fires on the next turn; None cancels the pending call."""
        self.clock.advance(10)
        self.timer.arm(3.0)
        self.clock.advance(0)
        self.assertEqual(self.fired, [(3.0, 10.0)])
        self.timer.arm(20.0)
        self.timer.arm(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_arm_in_puts_off_the_same_deadline(self) -> None:
        """arm_in fires later with the deadline already armed (the signaling put-off after a stall)."""
        self.timer.arm(1.0)
        self.timer.arm_in(0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.fired, [(1.0, 0.5)])

    def test_stop_leaves_nothing_pending(self) -> None:
        """After stop nothing is pending and arming does nothing (a stopped stack leaves no delayed call)."""
        self.timer.arm(1.0)
        self.timer.stop()
        self.timer.arm(2.0)
        self.timer.arm_in(1.0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
