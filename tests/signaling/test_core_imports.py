"""The room model, hub and storage stay sans-IO."""

from __future__ import annotations

import ast
import importlib.util

from twisted.trial import unittest

CORE = [
    "webrtcstack.rooms.storage", "webrtcstack.rooms.model", "webrtcstack.rooms.credentials",
    "webrtcstack.rooms.params", "webrtcstack.signaling.messages", "webrtcstack.signaling.hub",
    "webrtcstack.signaling.origin",
]
FORBIDDEN = ("twisted.internet", "twisted.web", "autobahn", "socket", "time", "asyncio", "random")


class CoreImportTests(unittest.TestCase):
    def test_no_io_imports(self) -> None:
        """No core module imports a reactor, a web framework, sockets, clocks or non-crypto randomness."""
        for name in CORE:
            spec = importlib.util.find_spec(name)
            assert spec is not None and spec.origin is not None
            with open(spec.origin, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for imported in names:
                    for bad in FORBIDDEN:
                        self.assertFalse(imported == bad or imported.startswith(bad + "."), f"{name} imports {imported}")
