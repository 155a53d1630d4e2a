# -*- test-case-name: tests.test_deadline -*-
"""One reactor timer pointed at a sans-IO core's next deadline (the shell side of ``next_deadline``).

Every core here (the TURN engine, the signaling hub) says when it next has
work (``next_deadline()``, absolute reactor seconds or None) and does it in
``handle_timer(now=...)``.  Its shell keeps exactly one delayed call for
that, re-pointed after every input: :class:`DeadlineTimer` is that call.

* :meth:`DeadlineTimer.arm` points the timer at a deadline (None cancels).
  Pointing it at the time it already has costs nothing, which is the common
  case: most inputs do not change the earliest deadline.
* When it fires it calls ``fire(deadline)`` once; the owner handles the
  timer and arms again.
* :meth:`DeadlineTimer.stop` cancels it for good: a stopped stack leaves no
  delayed call pending, and later ``arm`` calls do nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["DeadlineTimer"]


class DeadlineTimer:
    """A single re-armable delayed call.

    :param reactor: provides ``seconds`` and ``callLater`` (a ``task.Clock`` in tests).
    :param fire: called as ``fire(deadline)`` when the time comes.
    """

    def __init__(self, reactor: Any, fire: Callable[[float], None]) -> None:
        self.reactor = reactor
        self.fire = fire
        self.stopped = False
        #: the deadline armed (meaningless when not :meth:`active`)
        self.deadline = 0.0
        self._call: Any = None

    def active(self) -> bool:
        """Whether a call is pending."""
        return self._call is not None and self._call.active()

    def arm(self, deadline: float | None) -> None:
        """Fire at ``deadline`` (at once if it is past); None cancels."""
        if self.stopped:
            return
        call = self._call
        if deadline is None:
            if call is not None and call.active():
                call.cancel()
            self._call = None
            return
        delay = max(0.0, deadline - self.reactor.seconds())
        if call is not None and call.active():
            if abs(self.deadline - deadline) > 1e-6:
                self.deadline = deadline
                call.reset(delay)
            return
        self.deadline = deadline
        self._call = self.reactor.callLater(delay, self._fired)

    def arm_in(self, delay_s: float) -> None:
        """Fire ``delay_s`` from now, for the deadline already armed (a put-off; see the signaling shell)."""
        if self.stopped:
            return
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = self.reactor.callLater(delay_s, self._fired)

    def _fired(self) -> None:
        self._call = None
        self.fire(self.deadline)

    def stop(self) -> None:
        """Cancel for good."""
        self.stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
