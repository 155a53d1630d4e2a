"""Checks over the source tree: no ``random`` anywhere, no I/O imports in the TURN core."""

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

import webrtcstack

ROOT = os.path.dirname(os.path.abspath(webrtcstack.__file__))
CORE_FORBIDDEN = ("twisted.internet", "twisted.web", "autobahn", "socket", "time", "asyncio", "random")


def _imports(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files(top: str):
    for dirpath, _, files in os.walk(top):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


class ImportTests(SynchronousTestCase):
    def test_no_random(self) -> None:
        """No module of the server imports ``random`` (only ``secrets``/``os.urandom``)."""
        offenders = [p for p in _python_files(ROOT)
                     if any(n == "random" or n.startswith("random.") for n in _imports(p))]
        self.assertEqual(offenders, [])

    def test_turn_core_is_sans_io(self) -> None:
        """TURN core modules (everything but adapters/) import no reactor, sockets or clocks."""
        core = os.path.join(ROOT, "turn")
        offenders = []
        for path in _python_files(core):
            if os.sep + "adapters" + os.sep in path:
                continue
            for name in _imports(path):
                if any(name == f or name.startswith(f + ".") for f in CORE_FORBIDDEN):
                    offenders.append((os.path.relpath(path, ROOT), name))
        self.assertEqual(offenders, [])
