"""Node leases in a real ``redis-server``: nodes see each other, a duplicate id is refused, a node gives its lease back."""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.trial import unittest

from tests.signaling.wsclient import async_test
from tests.support import Event, RedisServer, after_each_call
from webrtcstack.cluster.client import RedisClient
from webrtcstack.cluster.lease import NodeLease
from webrtcstack.cluster.node import ClusterNode
from webrtcstack.cluster.resp import parse_url


class NodeTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.server = RedisServer(self)

    def node(self, node_id: str, **record: object) -> ClusterNode:
        client = RedisClient(parse_url(self.server.url), reactor, node_id=node_id)
        node = ClusterNode(client, NodeLease(node_id, lease_s=4, renew_s=1), reactor, prefix="t:",
                           record=lambda: dict(record), on_conflict=self.conflicts.append)
        self.addCleanup(node.stop)
        return node

    conflicts: list[str] = []

    def renewed(self, node: ClusterNode, condition: object) -> Event:
        event = Event(condition)  # type: ignore[arg-type]
        self.addCleanup(after_each_call(node, "_renewed", event))
        return event

    @async_test
    async def test_two_nodes_see_each_other(self) -> None:
        """Two nodes on one Redis: each renewal returns both, with their records; the lease keys expire unless renewed; ready once held."""
        self.conflicts = []
        a, b = self.node("a", public_url="https://a"), self.node("b", public_url="https://b")
        both = self.renewed(a, lambda: set(a.nodes) == {"a", "b"})
        a.start()
        b.start()
        await both.wait(10)
        self.assertTrue(a.ready)
        self.assertEqual(a.not_ready_reason(), "")
        self.assertEqual(a.nodes["b"]["record"]["public_url"], "https://b")
        ttl = self.server.command("PTTL", "t:node:a")
        self.assertTrue(0 < ttl <= 4000, ttl)
        self.assertEqual(self.server.command("GET", "t:node:a").decode(), a.lease.incarnation)
        status = a.status()
        self.assertEqual([n["node_id"] for n in status["nodes"]], ["a", "b"])
        self.assertEqual(self.conflicts, [])

    @async_test
    async def test_duplicate_id_is_refused(self) -> None:
        """A second live node with the same id gets a conflict (a clear reason, never ready); the first keeps its lease."""
        self.conflicts = []
        first = self.node("same")
        held = self.renewed(first, lambda: first.lease.renewed_at is not None)
        first.start()
        await held.wait(10)
        second = self.node("same")
        refused = self.renewed(second, lambda: bool(second.conflict))
        second.start()
        await refused.wait(10)
        self.assertIn("node_id 'same' is held by another live node", self.conflicts[0])
        self.assertFalse(second.ready)
        self.assertIn("held by another live node", second.not_ready_reason())
        self.assertEqual(self.server.command("GET", "t:node:same").decode(), first.lease.incarnation)

    @async_test
    async def test_stop_gives_the_lease_back(self) -> None:
        """A node that stops deletes its lease and leaves the index at once (the others need not wait for it to lapse)."""
        self.conflicts = []
        a = self.node("a")
        held = self.renewed(a, lambda: a.lease.renewed_at is not None)
        a.start()
        await held.wait(10)
        self.assertEqual(self.server.command("ZSCORE", "t:nodes", "a") is not None, True)
        await a.stop()
        self.assertIsNone(self.server.command("GET", "t:node:a"))
        self.assertIsNone(self.server.command("ZSCORE", "t:nodes", "a"))

    @async_test
    async def test_redis_restart_reclaims_the_lease(self) -> None:
        """Redis restarted empty: the node reconnects and claims its lease again (the script is loaded again)."""
        self.conflicts = []
        a = self.node("a", load=1)
        held = self.renewed(a, lambda: a.lease.renewed_at is not None)
        a.start()
        await held.wait(10)
        self.server.kill()
        self.server.start()
        back = Event(lambda: self.server.command("GET", "t:node:a") is not None)
        self.addCleanup(after_each_call(a, "_renewed", back))
        await back.wait(15)
        self.assertEqual(json.loads(self.server.command("GET", "t:node:a:info"))["load"], 1)
