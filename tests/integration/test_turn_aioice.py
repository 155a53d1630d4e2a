"""Interop: two aioice ICE agents restricted to relay candidates exchange data through our TURN server."""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import defer, utils
from twisted.trial import unittest

from tests.support import require
from tests.turn.stack import PASSWORD, USER, TurnStack

# Runs in a child process: aioice is asyncio, the server under test runs on this test's reactor.
AGENTS = r'''
import asyncio, sys
import aioice
from aioice.ice import TransportPolicy

async def main(port, transport):
    kw = dict(turn_server=("127.0.0.1", port), turn_username=sys.argv[3], turn_password=sys.argv[4],
              turn_transport=transport, use_ipv6=False, transport_policy=TransportPolicy.RELAY)
    a = aioice.Connection(ice_controlling=True, **kw)
    b = aioice.Connection(ice_controlling=False, **kw)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    for c in a.local_candidates:
        assert c.type == "relay", c
        await b.add_remote_candidate(c)
    for c in b.local_candidates:
        assert c.type == "relay", c
        await a.add_remote_candidate(c)
    await b.add_remote_candidate(None)
    await a.add_remote_candidate(None)
    b.remote_username, b.remote_password = a.local_username, a.local_password
    a.remote_username, a.remote_password = b.local_username, b.local_password
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 20)
    for i in range(20):
        await a.send(b"ping %d" % i)
        data = await asyncio.wait_for(b.recv(), 5)
        assert data == b"ping %d" % i, data
        await b.send(b"pong %d" % i)
        data = await asyncio.wait_for(a.recv(), 5)
        assert data == b"pong %d" % i, data
    await a.close()
    await b.close()
    print("OK relay", len(a.local_candidates), len(b.local_candidates))

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
'''


def _need_aioice() -> None:
    try:
        import aioice  # noqa: F401
    except ImportError:
        require("aioice is not installed (pip install '.[test]')")


class AioiceRelayTests(unittest.TestCase):
    timeout = 60
    #: more [turn] keys (the kernel offload's cases run these tests again with it on)
    stack_extra = ""

    def setUp(self) -> None:
        _need_aioice()
        self.stack = TurnStack(extra=self.stack_extra)
        self.stack.start()
        self.addCleanup(self.stack.stop)

    @defer.inlineCallbacks
    def run_agents(self, transport: str) -> Any:
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-c", AGENTS, str(self.stack.port), transport, USER, PASSWORD], env=dict(os.environ))
        self.assertEqual(code, 0, (out + err).decode(errors="replace")[-3000:])
        self.assertIn(b"OK relay", out)
        counters = self.stack.engine.counters
        self.assertGreaterEqual(counters.packets_to_peer, 40)
        self.assertGreaterEqual(counters.packets_to_client, 40)

    def test_udp(self) -> Any:
        """Two relay-only agents over TURN/UDP connect and exchange 40 messages."""
        return self.run_agents("udp")

    def test_tcp(self) -> Any:
        """Two relay-only agents over TURN/TCP connect and exchange 40 messages."""
        return self.run_agents("tcp")
