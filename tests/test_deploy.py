"""The systemd unit verifies, and CI runs exactly the README's test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


class SystemdUnitTests(unittest.TestCase):
    def test_unit_has_hardening_and_dedicated_user(self) -> None:
        """The unit runs as a dedicated user with the hardening options and restarts on failure."""
        unit = read("etc", "webrtcstack.service")
        for line in ("User=webrtcstack", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                     "Restart=on-failure", "LimitNOFILE=20000"):
            self.assertIn(f"\n{line}\n", unit)
        self.assertRegex(unit, r"(?m)^ExecStart=.*twistd .*webrtcstack --config /etc/webrtcstack/stack.ini$")

    def test_unit_is_notify_with_reload_watchdog_and_port_443(self) -> None:
        """The unit waits for READY=1, reloads with SIGHUP, has a watchdog, allows binding 443 and outlasts the drain."""
        unit = read("etc", "webrtcstack.service")
        for line in ("Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID",
                     "AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"):
            self.assertIn(f"\n{line}\n", unit)
        self.assertRegex(unit, r"(?m)^WatchdogSec=\d+$")
        stop = int(re.search(r"(?m)^TimeoutStopSec=(\d+)$", unit).group(1))  # type: ignore[union-attr]
        from webrtcstack.config import StackConfig

        self.assertGreater(stop, StackConfig().stack.drain_seconds)

    def test_systemd_analyze_verify(self) -> None:
        """`systemd-analyze verify` accepts the unit."""
        tool = shutil.which("systemd-analyze")
        if tool is None:
            if os.environ.get("CI"):
                self.fail("systemd-analyze is missing in CI (.ci/setup-tests installs systemd)")
            raise unittest.SkipTest("systemd-analyze not installed")
        result = subprocess.run([tool, "verify", os.path.join(ROOT, "etc", "webrtcstack.service")],
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class ReadmeTests(unittest.TestCase):
    def test_ci_runs_the_readme_test_command(self) -> None:
        """.ci/run runs the exact test command the README's quick start gives."""
        readme = read("README.md")
        m = re.search(r"Run the whole test suite.*?```(?:sh|bash)?\n([^\n]+)\n```", readme, re.S)
        self.assertIsNotNone(m, "README quick start has no test command block")
        assert m is not None
        command = m.group(1).strip()
        self.assertIn(command, read(".ci", "run"))
        self.assertIn("trial", command)
