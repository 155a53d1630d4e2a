"""Tests for the twistd plugin, tap.Options and the webrtcstack command."""

from __future__ import annotations

import io
import os
import re
import subprocess
from contextlib import redirect_stderr, redirect_stdout

from twisted.trial import unittest

from webrtcstack import cli, tap
from webrtcstack.config import Endpoint
from tests.support import TWISTD

#: Runs twistd itself (the console script) with this interpreter.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = "[turn]\nlisten = 127.0.0.1:0\nrealm = example.org\n[http]\nlisten = 127.0.0.1:0\n"
BAD = "[turn]\nrealm = example.org\nlisten = 127.0.0.1\n"


class OptionsTests(unittest.TestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_config_option_loads_the_file(self) -> None:
        """-c PATH loads and validates that file into options.config."""
        options = tap.Options()
        options.parseOptions(["-c", self.write(GOOD)])
        self.assertEqual(options.config.turn.realm, "example.org")
        self.assertEqual(options.config.turn.listen, (Endpoint("127.0.0.1", 0),))

    def test_bad_config_exits_non_zero_naming_the_key(self) -> None:
        """A bad config exits with status 2 and a message naming file, line, section and key."""
        path = self.write(BAD)
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as ctx:
            tap.Options().parseOptions(["--config", path])
        self.assertEqual(ctx.exception.code, 2)
        self.assertIn(f"{path}:3: [turn] listen", err.getvalue())

    def test_check_prints_listeners_and_exits_zero(self) -> None:
        """--check prints what would listen where and exits 0 for a valid config."""
        out = io.StringIO()
        with redirect_stdout(out), self.assertRaises(SystemExit) as ctx:
            tap.Options().parseOptions(["-c", self.write(GOOD), "--check"])
        self.assertEqual(ctx.exception.code, 0)
        self.assertIn("STUN/TURN  udp+tcp  127.0.0.1:0", out.getvalue())
        self.assertIn("OK", out.getvalue())

    def test_default_path_order(self) -> None:
        """Without -c, etc/stack.ini in the working directory is used first."""
        self.assertEqual(tap.DEFAULT_CONFIG_PATHS, ("etc/stack.ini", "/etc/webrtcstack/stack.ini"))
        old = os.getcwd()
        os.chdir(ROOT)
        self.addCleanup(os.chdir, old)
        self.assertEqual(tap.find_config(None), "etc/stack.ini")
        self.assertEqual(tap.find_config("x.ini"), "x.ini")


class ConfigSourceTests(unittest.TestCase):
    def test_start_up_log_names_the_file_or_warns_of_defaults(self) -> None:
        """The start-up log names the config file in force; with none found it warns that built-in defaults run."""
        from webrtcstack.config import StackConfig, parse_config

        self.assertEqual(tap.config_source(parse_config("", "etc/my.ini")),
                         (False, f"config file {os.path.abspath('etc/my.ini')}"))
        warning, text = tap.config_source(StackConfig())
        self.assertTrue(warning)
        self.assertIn("no config file found (looked for etc/stack.ini and /etc/webrtcstack/stack.ini): running on "
                      "the built-in defaults", text)

    def test_twistd_logs_the_config_file(self) -> None:
        """A real twistd start logs which file it loaded, before its ready line."""
        from tests.support import StackProcess

        stack = StackProcess(self, "[turn]\nenabled = no\n[http]\nlisten = 127.0.0.1:0\n[metrics]\nenabled = no\n")
        stack.lines.wait(r"config file " + re.escape(stack.path) + "$", 5, rescan=True)


class CliTests(unittest.TestCase):
    def test_check_config_good_and_bad(self) -> None:
        """webrtcstack check-config returns 0 for a good file and 2 with the location for a bad one."""
        good, bad = self.mktemp(), self.mktemp()
        with open(good, "w") as f:
            f.write(GOOD)
        with open(bad, "w") as f:
            f.write(BAD)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            self.assertEqual(cli.main(["check-config", good]), 0)
            self.assertEqual(cli.main(["check-config", bad]), 2)
        self.assertIn("HTTP/WS    tcp      127.0.0.1:0", out.getvalue())
        self.assertIn(f"{bad}:3: [turn] listen", err.getvalue())


class PluginTests(unittest.TestCase):
    def test_twistd_lists_the_plugin(self) -> None:
        """`twistd --help` run from elsewhere lists the installed webrtcstack plugin."""
        result = subprocess.run(
            TWISTD + ["--help"], cwd="/", capture_output=True, text=True, timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("webrtcstack", result.stdout)

    def test_twistd_check_with_typo_exits_non_zero(self) -> None:
        """`twistd -n webrtcstack -c bad.ini` exits non-zero naming section, key and line."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[turn]\nlisne = 0.0.0.0:3478\n")
        result = subprocess.run(
            TWISTD + ["-n", "--pidfile=", "webrtcstack", "-c", os.path.abspath(path)],
            cwd="/", capture_output=True, text=True, timeout=120,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(":2: [turn] lisne: unknown key (did you mean listen?)", result.stderr)
