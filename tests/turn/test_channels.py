"""Channel binding expiry and rebinding (RFC 8656 §12, §12.2), with time as an explicit number.

RFC 8656 §12: once a binding expires the channel is unbound, and the number
may be bound to another transport address (and the address to another
number).  The 5-minute wait before doing so is the *client's* obligation;
the server's §12.2 checks are against bindings that exist now.
"""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.stun.constants import AttrType, Method

from . import msgs
from .support import Client, error_code, make_engine

PEER = ("8.8.8.8", 7)
OTHER = ("8.8.4.4", 9)


class BoundChannelCase(SynchronousTestCase):
    """An allocation living 3600 s with channel 0x4000 bound to PEER at t=0."""

    def setUp(self) -> None:
        self.engine, self.opener = make_engine()
        self.client = Client(self.engine)
        self.client.allocate(now=0)
        self.client.refresh(3600, now=0)
        self.relay = self.opener.relays[0]
        self.allocation = self.engine.manager.allocations[self.client.five_tuple]
        self.assertIsNone(error_code(self.client.channel_bind(0x4000, *PEER, now=0)))


class ChannelExpiryTests(BoundChannelCase):

    def expire(self) -> None:
        """Keep the peer's permission alive, then let the channel's 600 s run out."""
        self.client.create_permission(PEER[0], now=290)
        self.client.create_permission(PEER[0], now=580)
        self.engine.handle_timer(now=599)
        self.assertIn(0x4000, self.allocation.channels)
        self.assertEqual(self.engine.next_deadline(), 600)
        self.engine.handle_timer(now=600)
        self.client.fetch_nonce(600)

    def channel_data(self, number: int, payload: bytes, now: float) -> None:
        self.client.send_raw(struct.pack("!HH", number, len(payload)) + payload, now)

    def test_expiry_empties_both_fast_path_tables(self) -> None:
        """At expiry the binding leaves channel_routes and channel_by_peer, and the counters follow."""
        self.expire()
        self.assertEqual(self.allocation.channels, {})
        self.assertEqual(self.allocation.channel_by_peer, {})
        self.assertEqual(self.engine.fast_path.channels, {})
        self.assertEqual(self.engine.counters.channels_active, 0)
        self.assertEqual(self.engine.counters.permissions_active, 1)

    def test_no_channel_data_after_expiry(self) -> None:
        """After expiry, client ChannelData is dropped and peer data comes back as a Data indication."""
        self.expire()
        self.channel_data(0x4000, b"late", 600)
        self.assertEqual(self.relay.sent, [])
        self.assertEqual(self.engine.counters.dropped["no_channel"], 1)
        self.allocation.handle_peer_datagram(b"back", PEER, 600)
        [data] = self.client.received
        self.assertEqual(msgs.decode(data).method, Method.DATA)

    def test_number_to_another_peer_after_expiry(self) -> None:
        """Once unbound, the number binds to another peer at once, and traffic follows the new peer only."""
        self.expire()
        self.assertIsNone(error_code(self.client.channel_bind(0x4000, *OTHER, now=601)))
        self.channel_data(0x4000, b"new", 601)
        self.assertEqual(self.relay.sent, [(b"new", OTHER)])
        self.allocation.handle_peer_datagram(b"old", PEER, 601)
        self.assertEqual(msgs.decode(self.client.received[0]).method, Method.DATA)
        self.assertEqual(self.engine.counters.channels_active, 1)
        self.assertEqual(self.engine.counters.permissions_active, 2)

    def test_same_binding_again_after_expiry(self) -> None:
        """Binding the same number to the same peer after expiry makes one new binding."""
        self.expire()
        self.assertIsNone(error_code(self.client.channel_bind(0x4000, *PEER, now=601)))
        self.assertEqual(self.allocation.channels[0x4000].expires_at, 1201)
        self.assertEqual(self.engine.counters.channels_active, 1)
        self.assertEqual(self.engine.counters.permissions_active, 1)

    def test_stale_heap_entry_does_not_remove_new_binding(self) -> None:
        """A refresh pushes the expiry back; the earlier timer entry leaves the binding alone."""
        self.client.channel_bind(0x4000, *PEER, now=500)
        self.engine.handle_timer(now=600)
        self.assertIn(0x4000, self.allocation.channels)
        self.channel_data(0x4000, b"still", 600)
        self.assertEqual(self.relay.sent, [(b"still", PEER)])
        self.engine.handle_timer(now=1100)
        self.assertEqual(self.engine.fast_path.channels, {})

    def test_live_conflicts_get_400(self) -> None:
        """While bound, the number cannot go to another peer nor the peer to another number (§12.2)."""
        self.assertEqual(error_code(self.client.channel_bind(0x4000, *OTHER, now=1)), 400)
        self.assertEqual(error_code(self.client.channel_bind(0x4001, *PEER, now=1)), 400)
        self.assertEqual(self.engine.counters.channels_active, 1)

    def test_deletion_clears_channels(self) -> None:
        """Refresh 0 removes the bindings from every table and the counters."""
        self.assertEqual(self.client.refresh(0, now=10).get(AttrType.ERROR_CODE), None)
        self.assertEqual(self.engine.fast_path.channels, {})
        self.assertEqual(self.allocation.channel_by_peer, {})
        self.assertEqual(self.engine.counters.channels_active, 0)
        self.assertEqual(self.engine.counters.permissions_active, 0)


class ChannelPermissionTests(BoundChannelCase):
    """RFC 8656 §11.3: a peer datagram needs a permission for its IP before its channel counts.

    Channels last 600 s and permissions 300 s, so the relay-side table
    (``Allocation.channel_by_peer``, read for every peer datagram) must lose
    the binding when the permission lapses and get it back when the
    permission is created again.
    """

    def from_peer(self, payload: bytes, now: float, peer: tuple[str, int] = PEER) -> bytes | None:
        """Deliver one datagram from ``peer`` the way the relay socket does; what the client got, if anything."""
        self.client.received.clear()
        self.relay.allocation.handle_peer_datagram(payload, peer, now)
        if not self.client.received:
            return None
        [data] = self.client.received
        return data

    def test_lapse_and_refresh(self) -> None:
        """ChannelData at 299 s, dropped and counted at 301 s, ChannelData again after CreatePermission at 350 s."""
        self.engine.handle_timer(now=299)
        self.assertEqual(self.from_peer(b"a", 299), struct.pack("!HH", 0x4000, 1) + b"a")
        self.engine.handle_timer(now=301)
        self.assertNotIn(PEER[0], self.allocation.permissions)
        self.assertEqual(self.allocation.channel_by_peer, {})
        self.assertIsNone(self.from_peer(b"b", 301))
        self.assertEqual(self.engine.counters.dropped["no_permission"], 1)
        self.assertEqual(self.engine.counters.packets_to_client, 1)
        self.assertIsNone(error_code(self.client.create_permission(PEER[0], now=350)))
        self.assertEqual(self.allocation.channel_by_peer, {PEER: self.allocation.channels[0x4000]})
        self.assertEqual(self.from_peer(b"c", 350), struct.pack("!HH", 0x4000, 1) + b"c")
        self.assertEqual(self.engine.counters.dropped["no_permission"], 1)

    def test_tables_follow_permission_and_channel(self) -> None:
        """channel_by_peer holds the binding only while both exist; channel_routes follows the channel alone."""
        route_key = (self.client.five_tuple, 0x4000)
        self.assertIn(PEER, self.allocation.channel_by_peer)
        self.engine.handle_timer(now=300)
        self.assertEqual(self.allocation.channel_by_peer, {})
        self.assertIn(PEER, self.allocation.bindings_by_peer)
        self.assertIn(route_key, self.engine.fast_path.channels)
        self.client.create_permission(PEER[0], now=350)
        self.assertIn(PEER, self.allocation.channel_by_peer)
        self.engine.handle_timer(now=600)
        self.assertEqual(self.allocation.channel_by_peer, {})
        self.assertEqual(self.allocation.bindings_by_peer, {})
        self.assertEqual(self.engine.fast_path.channels, {})
        self.assertIn(PEER[0], self.allocation.permissions)
        self.engine.handle_timer(now=650)
        self.assertEqual(self.allocation.permissions, {})
        self.assertEqual(self.engine.counters.permissions_active, 0)

    def test_channel_bind_refresh_reinstates(self) -> None:
        """A ChannelBind refresh after the permission lapsed installs it again and the binding returns."""
        self.engine.handle_timer(now=301)
        self.assertIsNone(self.from_peer(b"x", 301))
        self.client.fetch_nonce(400)
        self.assertIsNone(error_code(self.client.channel_bind(0x4000, *PEER, now=400)))
        self.assertEqual(self.allocation.permissions[PEER[0]], 700)
        self.assertEqual(self.from_peer(b"y", 400), struct.pack("!HH", 0x4000, 1) + b"y")
        self.engine.handle_timer(now=700)
        self.assertIsNone(self.from_peer(b"z", 700))
        self.assertIn(0x4000, self.allocation.channels)
        self.assertEqual(self.engine.counters.dropped["no_permission"], 2)

    def test_refreshed_permission_keeps_the_binding(self) -> None:
        """A CreatePermission refresh before the lapse keeps the binding; the stale expiry entry removes nothing."""
        self.client.create_permission(PEER[0], now=290)
        self.engine.handle_timer(now=300)
        self.assertEqual(self.from_peer(b"k", 300), struct.pack("!HH", 0x4000, 1) + b"k")
        self.engine.handle_timer(now=590)
        self.assertIsNone(self.from_peer(b"gone", 590))

    def test_other_ports_of_the_ip(self) -> None:
        """The permission is per IP: every channel to that IP leaves and returns together; other IPs stay."""
        self.assertIsNone(error_code(self.client.channel_bind(0x4001, PEER[0], 8, now=0)))
        self.assertIsNone(error_code(self.client.channel_bind(0x4002, *OTHER, now=200)))
        self.engine.handle_timer(now=300)
        self.assertEqual(set(self.allocation.channel_by_peer), {OTHER})
        self.assertEqual(self.from_peer(b"o", 300, OTHER), struct.pack("!HH", 0x4002, 1) + b"o")
        self.client.create_permission(PEER[0], now=310)
        self.assertEqual(set(self.allocation.channel_by_peer), {PEER, (PEER[0], 8), OTHER})
        self.assertEqual(self.from_peer(b"p", 310, (PEER[0], 8)), struct.pack("!HH", 0x4001, 1) + b"p")

    def test_no_permission_no_data_indication_either(self) -> None:
        """With the permission gone a peer with no channel gets nothing through, as before."""
        self.engine.handle_timer(now=301)
        self.assertIsNone(self.from_peer(b"q", 301, (PEER[0], 1234)))
        self.assertEqual(self.engine.counters.dropped["no_permission"], 1)

    def test_client_channel_data_needs_only_the_channel(self) -> None:
        """RFC 8656 §12.6: the server relays client ChannelData on a bound channel; a lapsed permission does not stop it."""
        self.engine.handle_timer(now=301)
        self.client.send_raw(struct.pack("!HH", 0x4000, 3) + b"out", 301)
        self.assertEqual(self.relay.sent, [(b"out", PEER)])

    def test_conflict_checks_see_bindings_without_permission(self) -> None:
        """RFC 8656 §12.2: a bound peer stays bound while its permission is lapsed, so another number gets 400."""
        self.engine.handle_timer(now=301)
        self.client.fetch_nonce(301)
        self.assertEqual(error_code(self.client.channel_bind(0x4001, *PEER, now=301)), 400)
        self.assertEqual(self.allocation.channel_by_peer, {})
