"""The shared test helpers: prerequisites fail under CI and skip elsewhere; waits wake on events."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests import support


class RequireTests(unittest.TestCase):
    def set_ci(self, value: str | None) -> None:
        old = os.environ.get("CI")
        if value is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = value
        self.addCleanup(lambda: os.environ.__setitem__("CI", old) if old is not None else os.environ.pop("CI", None))

    def test_missing_fails_under_ci(self) -> None:
        """Under CI=true a missing prerequisite is a failure naming it, not a skip."""
        self.set_ci("true")
        e = self.assertRaises(AssertionError, support.require, "frobnicator is not installed")
        self.assertIn("frobnicator", str(e))
        self.assertRaises(AssertionError, support.need_tool, "no-such-tool-webrtcstack")

    def test_missing_skips_elsewhere(self) -> None:
        """Without CI a missing prerequisite skips with its reason."""
        self.set_ci(None)
        e = self.assertRaises(unittest.SkipTest, support.require, "frobnicator is not installed")
        self.assertIn("frobnicator", str(e))

    def test_present_goes_on(self) -> None:
        """A present tool gives its path."""
        self.set_ci("true")
        self.assertTrue(support.need_tool("sh").endswith("/sh"))


class WaitTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_recv_within_wakes_on_the_datagram(self) -> None:
        """recv_within returns the datagram once it arrives, and times out when none does."""
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(a.close)
        a.bind(("127.0.0.1", 0))
        a.setblocking(False)
        reactor.callLater(0.01, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"hi", a.getsockname()))
        data, _ = yield support.recv_within(a, 5)
        self.assertEqual(data, b"hi")
        yield self.assertFailure(support.recv_within(a, 0.05), defer.TimeoutError)

    @defer.inlineCallbacks
    def test_event_fires_on_check(self) -> None:
        """An Event's wait fires when the code under test makes the condition true."""
        box: list[int] = []
        event = support.Event(lambda: bool(box))
        d = event.wait(5)
        event.check()
        self.assertFalse(d.called)
        box.append(1)
        event.check()
        yield d

    def test_lines_wait_for_a_line(self) -> None:
        """Lines.wait returns the matching line of a child's output, and fails at end of output."""
        proc = subprocess.Popen([sys.executable, "-c", "print('one'); print('ready: 42', flush=True)"],
                                stdout=subprocess.PIPE)
        self.addCleanup(proc.wait)
        assert proc.stdout is not None
        self.addCleanup(proc.stdout.close)
        lines = support.Lines(proc.stdout)
        self.assertEqual(lines.wait(r"ready: (\d+)", 10).group(1), "42")
        self.assertRaises(AssertionError, lines.wait, "never", 10)
        self.assertEqual(lines.seen[:2], ["one", "ready: 42"])
