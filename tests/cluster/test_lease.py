"""A node's id and lease timing (sans-IO)."""

from __future__ import annotations

from twisted.trial import unittest

from webrtcstack.cluster.lease import NodeLease, default_node_id


class LeaseTests(unittest.TestCase):
    def test_default_node_id(self) -> None:
        """Host name plus a digest of the sorted listen addresses: stable across restarts, different per address set."""
        a = default_node_id("call-1.example", ["http=0.0.0.0:8080", "turn=0.0.0.0:3478"])
        self.assertEqual(a, default_node_id("call-1.example", ["turn=0.0.0.0:3478", "http=0.0.0.0:8080"]))
        self.assertNotEqual(a, default_node_id("call-1.example", ["http=0.0.0.0:8081", "turn=0.0.0.0:3478"]))
        self.assertTrue(a.startswith("call-1.example-"))
        self.assertEqual(default_node_id("we ird/host", []).split("-")[0:2], ["we", "ird"])

    def test_fence_after_a_lapse(self) -> None:
        """Renewed within the lease: held, no fence.  Not renewed for longer than the lease: a new incarnation, once."""
        lease = NodeLease("n1", lease_s=10, renew_s=2)
        first = lease.incarnation
        self.assertFalse(lease.held(0))
        self.assertFalse(lease.fence_if_lapsed(0))  # never held: nothing to fence
        lease.renewed(100)
        self.assertTrue(lease.held(109.9))
        self.assertFalse(lease.fence_if_lapsed(109.9))
        self.assertFalse(lease.held(110))
        self.assertTrue(lease.fence_if_lapsed(110))
        self.assertNotEqual(lease.incarnation, first)
        self.assertEqual((lease.previous, lease.fences), (first, 1))
        self.assertFalse(lease.fence_if_lapsed(111))  # until renewed again, there is nothing more to fence
        lease.renewed(111)
        self.assertEqual(lease.age(112), 1)
