"""The sans-IO core imports no I/O: the rule of ../shared/STYLE.md, checked."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from fnmatch import fnmatch

from twisted.trial import unittest

from tests.support import require

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "webrtcstack")

#: The Twisted shell: the only modules that may touch sockets, the reactor, the web or Autobahn.
SHELL = [
    "tap.py", "service.py", "sockets.py", "cli.py", "web.py", "httpsite.py", "tls.py",
    "turn/adapters/*", "signaling/protocol*.py", "signaling/factory*.py", "signaling/resource*.py",
    "rooms/resource*.py", "rooms/page*.py", "ops/*", "cluster/client.py", "cluster/node.py", "cluster/rooms.py",
    "certs/service.py", "certs/acme_flow.py",
]
FORBIDDEN = ("twisted.internet", "twisted.web", "twisted.application", "autobahn", "socket", "time", "asyncio", "select")


def core_modules() -> list[str]:
    """Relative paths of every core module under src/webrtcstack."""
    found = []
    for dirpath, _, files in os.walk(SRC):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, name), SRC).replace(os.sep, "/")
                if not any(fnmatch(rel, pattern) for pattern in SHELL):
                    found.append(rel)
    return sorted(found)


def imported_names(path: str) -> set[str]:
    """Every module name a file imports."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


class CoreImportTests(unittest.TestCase):
    def test_core_modules_import_no_io(self) -> None:
        """No core module imports twisted.internet/web/application, autobahn, socket, time, asyncio or select."""
        modules = core_modules()
        self.assertIn("config.py", modules)
        bad = []
        for rel in modules:
            for name in imported_names(os.path.join(SRC, rel)):
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                    bad.append(f"{rel}: {name}")
        self.assertEqual(bad, [])

    def test_no_random(self) -> None:
        """No module of the server imports ``random``: randomness comes only from ``secrets``/``os.urandom``."""
        offenders = []
        for dirpath, _, files in os.walk(SRC):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    if any(n == "random" or n.startswith("random.") for n in imported_names(path)):
                        offenders.append(os.path.relpath(path, SRC))
        self.assertEqual(offenders, [])

    def test_core_passes_mypy_strict(self) -> None:
        """`mypy --strict` finds nothing in the core modules (STYLE.md: type hints everywhere)."""
        try:
            import mypy  # noqa: F401
        except ImportError:
            require("mypy is not installed (pip install '.[test]')")
        files = [os.path.join(SRC, rel) for rel in core_modules()]
        result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", os.path.abspath(self.mktemp()),
                                 *files], capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_checker_sees_a_forbidden_import(self) -> None:
        """The import walker reports `from twisted.internet import reactor` (so the check above can fail)."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("from twisted.internet import reactor\nimport socket\nfrom random import choice\n")
        self.assertTrue({"twisted.internet", "socket", "random"} <= imported_names(path))
