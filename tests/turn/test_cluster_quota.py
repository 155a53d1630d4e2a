"""The TURN engine with other nodes beside it (``[redis]``): cluster-wide quotas and 300 Try Alternate.

The other nodes are a real :class:`~webrtcstack.cluster.turnview.TurnClusterView` fed the
records a lease renewal returns; no Redis is needed to decide.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.cluster.turnview import TurnClusterView, turn_report
from webrtcstack.stun.attributes import unpack_address
from webrtcstack.stun.constants import AttrType
from webrtcstack.turn.five_tuple import Transport

from . import msgs
from .support import Client, error_code, make_engine


def node(allocations: int = 0, users: dict[str, int] | None = None, accepting: bool = True,
         servers: tuple[tuple[str, str, int], ...] = (("udp", "192.0.2.20", 3478), ("tcp", "192.0.2.20", 3478),
                                                       ("udp", "2001:db8::20", 3478)),
         urls: tuple[list[str], list[str]] = (["turn:b"], ["stun:b"])) -> dict[str, Any]:
    return {"expires_ms": 0, "record": turn_report(allocations, users or {}, accepting, servers, *urls)}


def with_view(**settings: Any) -> tuple[Any, TurnClusterView]:
    engine, _ = make_engine(**settings)
    view = TurnClusterView("a")
    engine.elsewhere = view
    return engine, view


class ClusterQuotaTests(SynchronousTestCase):
    def test_user_quota_counts_other_nodes(self) -> None:
        """A user holding user_quota allocations on other nodes gets 486 here; another user does not; once the others release, it is allowed."""
        engine, view = with_view(user_quota=2)
        view.update({"a": node(), "b": node(1, {"alice": 1}), "c": node(1, {"alice": 1})})
        self.assertEqual(error_code(Client(engine, client=("198.51.100.7", 1)).allocate()), 486)
        self.assertIsNone(error_code(Client(engine, client=("198.51.100.7", 2), username="bob", password="secret-b").allocate()))
        self.assertEqual(engine.counters.quota_hits, {"user": 1})
        view.update({"a": node(), "b": node(1, {"alice": 1})})  # node c was reaped: its lease record is gone
        self.assertIsNone(error_code(Client(engine, client=("198.51.100.7", 3)).allocate()))
        self.assertEqual(error_code(Client(engine, client=("198.51.100.7", 4)).allocate()), 486)

    def test_own_record_is_not_counted_twice(self) -> None:
        """This node's own record in the renewal is left out: its live counts are the engine's."""
        engine, view = with_view(user_quota=1)
        view.update({"a": node(5, {"alice": 5})})
        self.assertEqual(view.total, 0)
        self.assertIsNone(error_code(Client(engine).allocate()))

    def test_total_quota_counts_other_nodes(self) -> None:
        """total_quota is cluster-wide: allocations on other nodes fill it; 508 here once the sum is reached."""
        engine, view = with_view(total_quota=3, user_quota=0)
        view.update({"b": node(2, {"carol": 2})})
        self.assertIsNone(error_code(Client(engine, client=("198.51.100.7", 1)).allocate()))
        self.assertEqual(error_code(Client(engine, client=("198.51.100.7", 2)).allocate()), 508)
        self.assertEqual(engine.counters.quota_hits, {"total": 1})
        self.assertEqual(view.cluster_total, 2)

    def test_ports_exhausted_names_alternate(self) -> None:
        """A node out of relay ports answers 300 with ALTERNATE-SERVER of the least loaded node with room (same family and transport), signed."""
        engine, view = with_view(relay_ports=(50000, 50000), user_quota=0)
        view.update({"b": node(7), "c": node(3, servers=(("udp", "192.0.2.30", 3479),)),
                     "d": node(0, accepting=False, servers=(("udp", "192.0.2.40", 3478),))})
        self.assertIsNone(error_code(Client(engine, client=("198.51.100.7", 1)).allocate()))
        client = Client(engine, client=("198.51.100.7", 2))
        reply = client.allocate()
        self.assertEqual(error_code(reply), 300)
        self.assertEqual(unpack_address(reply.get(AttrType.ALTERNATE_SERVER), None), ("192.0.2.30", 3479))
        self.assertTrue(msgs.verify(client.last_reply, client.key))
        self.assertEqual(engine.counters.quota_hits, {"ports": 1})
        # A TCP client is sent to a node with a TCP address; an IPv6 client to an IPv6 address.
        reply = Client(engine, client=("198.51.100.7", 3), transport=Transport.TCP).allocate()
        self.assertEqual(unpack_address(reply.get(AttrType.ALTERNATE_SERVER), None), ("192.0.2.20", 3478))
        reply = Client(engine, client=("2001:db8::7", 3)).allocate()
        self.assertEqual(unpack_address(reply.get(AttrType.ALTERNATE_SERVER), None), ("2001:db8::20", 3478))

    def test_no_alternate_is_508(self) -> None:
        """Out of ports with no other node able to take it (none, all full or draining, or a TLS client): 508."""
        engine, view = with_view(relay_ports=(50000, 50000), user_quota=0)
        self.assertIsNone(error_code(Client(engine, client=("198.51.100.7", 1)).allocate()))
        view.update({"b": node(0, accepting=False)})
        self.assertEqual(error_code(Client(engine, client=("198.51.100.7", 2)).allocate()), 508)
        view.update({"b": node(0)})
        self.assertEqual(error_code(Client(engine, client=("198.51.100.7", 3), transport=Transport.TLS).allocate()), 508)
        self.assertEqual(error_code(Client(engine, client=("198.51.100.7", 4)).allocate()), 300)

    def test_draining_names_alternate(self) -> None:
        """A draining node sends new allocations to a live node with room; existing ones stay; alone, it answers 508."""
        engine, view = with_view()
        kept = Client(engine, client=("198.51.100.7", 1))
        self.assertIsNone(error_code(kept.allocate()))
        engine.draining = True
        self.assertFalse(engine.accepting())
        self.assertEqual(error_code(Client(engine, client=("198.51.100.7", 2)).allocate()), 508)
        view.update({"b": node(1)})
        reply = Client(engine, client=("198.51.100.7", 3)).allocate()
        self.assertEqual(error_code(reply), 300)
        self.assertEqual(unpack_address(reply.get(AttrType.ALTERNATE_SERVER), None), ("192.0.2.20", 3478))
        self.assertIsNone(error_code(kept.refresh(600)))
        self.assertEqual(engine.counters.quota_hits, {"draining": 2})


class IceOrderTests(SynchronousTestCase):
    def test_least_loaded_first_own_first_on_ties(self) -> None:
        """iceconfig lists the least loaded nodes first, this node first among equals, at most `limit` nodes; full nodes are left out."""
        view = TurnClusterView("a")
        view.update({"a": node(9), "b": node(2, urls=(["turn:b"], ["stun:b"])),
                     "c": node(1, urls=(["turn:c"], ["stun:c"])),
                     "d": node(0, accepting=False, urls=(["turn:d"], ["stun:d"]))})
        own = (["turn:a"], ["stun:a"])
        self.assertEqual(view.ice_urls(2, True, own, 2), (["turn:c", "turn:a"], ["stun:c", "stun:a"]))
        self.assertEqual(view.ice_urls(1, True, own, 2), (["turn:a", "turn:c"], ["stun:a", "stun:c"]))
        self.assertEqual(view.ice_urls(0, True, own, 9), (["turn:a", "turn:c", "turn:b"], ["stun:a", "stun:c", "stun:b"]))
        self.assertEqual(view.ice_urls(0, False, own, 1), (["turn:c"], ["stun:c"]))

    def test_alone_or_everyone_full(self) -> None:
        """With no other node, or none with room, iceconfig still lists this node."""
        view = TurnClusterView("a")
        own = (["turn:a"], ["stun:a"])
        self.assertEqual(view.ice_urls(0, True, own, 2), own)
        view.update({"b": node(0, accepting=False)})
        self.assertEqual(view.ice_urls(0, False, own, 2), own)

    def test_bad_records_ignored(self) -> None:
        """A record with wrong types (another version, a hand-written key) is skipped, not raised on."""
        view = TurnClusterView("a")
        view.update({"b": {"record": {"allocations": "x", "turn_users": [1], "turn_accepting": True,
                                      "turn_servers": [["udp", 5, "x"], "junk", ["udp", "name.example", 3478]],
                                      "turn_urls": [3, "turn:b"]}}, "c": {}})
        self.assertEqual((view.total, view.user_count("alice")), (0, 0))
        self.assertIsNone(view.alternate("udp", 4))
        self.assertEqual(view.ice_urls(5, True, (["turn:a"], []), 2), (["turn:b", "turn:a"], []))
