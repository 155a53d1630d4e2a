"""JSON log lines."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger
from twisted.trial import unittest

from webrtcstack.ops.logs import json_observer


class JsonLogTests(unittest.TestCase):
    def test_one_json_object_per_event(self) -> None:
        """Each event becomes one line with time, level, namespace and the formatted message."""
        out = io.StringIO()
        log = Logger(namespace="webrtcstack.test", observer=json_observer(out))
        log.warn("auth failure: {reason}", reason="stale nonce")
        record = json.loads(out.getvalue().splitlines()[0])
        self.assertEqual(record["level"], "warn")
        self.assertEqual(record["namespace"], "webrtcstack.test")
        self.assertEqual(record["message"], "auth failure: stale nonce")
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")

    def test_failure_has_traceback(self) -> None:
        """A logged failure carries its traceback text."""
        out = io.StringIO()
        log = Logger(namespace="t", observer=json_observer(out))
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("boom")
        record = json.loads(out.getvalue())
        self.assertEqual(record["level"], "critical")
        self.assertIn("ZeroDivisionError", record["traceback"])

    def test_stream_is_fixed_when_made(self) -> None:
        """The observer keeps writing to the stdout it was made with after sys.stdout is replaced (twistd does that)."""
        import sys

        first, second = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", first)
        observer = json_observer()
        self.patch(sys, "stdout", second)
        Logger(namespace="t", observer=observer).info("hello")
        self.assertEqual((json.loads(first.getvalue())["message"], second.getvalue()), ("hello", ""))
