"""Which changed keys a reload applies and which wait for a restart."""

from __future__ import annotations

from twisted.trial import unittest

from webrtcstack.config import parse_config
from webrtcstack.ops.reload import applied_keys, restart_keys


class ReloadKeyTests(unittest.TestCase):
    def test_worker_count_needs_a_restart(self) -> None:
        """A new [turn] workers is reported as needing a restart, not as applied."""
        old, new = parse_config(""), parse_config("[turn]\nworkers = 2\nuser_quota = 3\n")
        self.assertEqual(restart_keys(old, new), ["[turn] workers"])
        self.assertEqual(applied_keys(old, new), ["[turn] user_quota"])
