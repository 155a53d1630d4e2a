"""The wheel ships the twistd plugin file but never a twisted/__init__.py."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WheelTests(unittest.TestCase):
    def test_wheel_contains_plugin_and_no_twisted_init(self) -> None:
        """A built wheel holds twisted/plugins/webrtcstack_plugin.py and the package, and no twisted/__init__.py."""
        out = os.path.abspath(self.mktemp())
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT],
            capture_output=True, text=True, timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        (wheel,) = glob.glob(os.path.join(out, "webrtcstack-*.whl"))
        names = set(zipfile.ZipFile(wheel).namelist())
        self.assertIn("twisted/plugins/webrtcstack_plugin.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertIn("webrtcstack/tap.py", names)
        self.assertIn("webrtcstack/config.py", names)
        # Every module of the source tree ships (a package left out of setup.cfg's list is missing only
        # from a real install, never from the editable one the tests run on).
        src = os.path.join(ROOT, "src")
        for folder, _, files in os.walk(os.path.join(src, "webrtcstack")):
            for name in files:
                if name.endswith((".py", ".c")):  # .c: the kernel offload's XDP program, built where it runs
                    rel = os.path.relpath(os.path.join(folder, name), src).replace(os.sep, "/")
                    self.assertIn(rel, names)
        entry_points = [n for n in names if n.endswith("entry_points.txt")]
        self.assertEqual(len(entry_points), 1)
        text = zipfile.ZipFile(wheel).read(entry_points[0]).decode()
        self.assertIn("webrtcstack = webrtcstack.cli:main", text)
