"""The systemd unit verifies, and CI runs exactly the README's test command."""

from __future__ import annotations

import os
import re
import subprocess

from twisted.trial import unittest

from tests.support import need_tool

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
        tool = need_tool("systemd-analyze", "systemd")
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


class CiRunTests(unittest.TestCase):
    """.ci/run itself, on a throw-away tree whose set-up does nothing and whose suite is one module."""

    def run_ci(self, test_body: str) -> subprocess.CompletedProcess[str]:
        tree = self.mktemp()
        os.makedirs(os.path.join(tree, ".ci"))
        os.makedirs(os.path.join(tree, "tests"))
        with open(os.path.join(ROOT, ".ci", "run")) as f:
            ci_run = f.read()
        for path, text in ((".ci/run", ci_run), (".ci/setup-tests", "exit 0\n"), ("tests/__init__.py", ""),
                           ("tests/test_one.py", "from twisted.trial import unittest\n\n\nclass T(unittest.TestCase):\n"
                                                 "    def test_runs(self):\n        pass\n\n" + test_body)):
            with open(os.path.join(tree, path), "w") as f:
                f.write(text)
        return subprocess.run(["bash", ".ci/run"], cwd=tree, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, CI="true"))

    def test_passes_when_every_test_ran(self) -> None:
        """A suite with no skip passes and prints the plain count line."""
        done = self.run_ci("    def test_also(self):\n        pass\n")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("\ntrial: 2 passed, 0 failed, 0 skipped\n", done.stdout)

    def test_fails_on_a_skip_and_names_it(self) -> None:
        """One skipped test fails the run, and the output names the test and its reason."""
        done = self.run_ci("    def test_needs_a_tool(self):\n        raise unittest.SkipTest('frobnicator is not installed')\n")
        self.assertNotEqual(done.returncode, 0, done.stdout)
        self.assertIn("1 skipped", done.stdout)
        self.assertIn("frobnicator is not installed", done.stdout.split("these were skipped:")[-1])
        self.assertIn("tests.test_one.T.test_needs_a_tool", done.stdout.split("these were skipped:")[-1])

    def test_fails_on_a_failure(self) -> None:
        """A failing test fails the run."""
        done = self.run_ci("    def test_broken(self):\n        self.fail('no')\n")
        self.assertNotEqual(done.returncode, 0, done.stdout)
        self.assertIn("1 failed", done.stdout)
