"""The kernel offload's table on the core: which channels the kernel maps hold, and when (no kernel here).

The maps are dicts behind the same three calls the shell's BPF maps answer; the
engine is driven by method calls and explicit times, so expiry is exact.
"""

from __future__ import annotations

import socket
import struct

from twisted.trial import unittest

from tests.turn.support import Client, make_engine
from webrtcstack.turn.five_tuple import Transport
from webrtcstack.turn.offload.routes import COUNTS, KernelRoutes, c2p_entry, p2c_entry

PEER = ("8.8.8.8", 6000)
OTHER_PEER = ("8.8.4.4", 6001)


class DictMap:
    """A BPF hash map as a dict, full at ``max_entries``."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.entries: dict[bytes, bytes] = {}
        self.max_entries = max_entries

    def update(self, key: bytes, value: bytes) -> None:
        if key not in self.entries and len(self.entries) >= self.max_entries:
            raise OSError(7, "Argument list too long")  # E2BIG, as the kernel answers
        self.entries[key] = value

    def lookup(self, key: bytes) -> bytes | None:
        return self.entries.get(key)

    def delete(self, key: bytes) -> bool:
        return self.entries.pop(key, None) is not None

    def items(self) -> dict[bytes, bytes]:
        self.batch_reads = getattr(self, "batch_reads", 0) + 1
        return dict(self.entries)

    def count(self, key: bytes, packets: int, nbytes: int) -> None:
        """What the XDP program does per forwarded packet, as a total."""
        value = self.entries[key]
        self.entries[key] = value[:-COUNTS.size] + COUNTS.pack(packets, nbytes)


def v4(host: str) -> bytes:
    return socket.inet_aton(host)


class KernelRoutesTests(unittest.TestCase):
    def setUp(self) -> None:
        self.engine, self.opener = make_engine(max_bps=0)
        self.c2p, self.p2c = DictMap(), DictMap()
        self.routes = KernelRoutes(self.c2p, self.p2c, self.engine.counters, lambda host: host == PEER[0])
        self.engine.manager.routes = self.routes
        self.client = Client(self.engine)
        self.client.allocate()
        self.allocation = self.engine.manager.get(self.client.five_tuple)
        self.relay = self.allocation.relays[4].address

    def keys(self, number: int = 0x4001, peer: tuple[str, int] = PEER) -> tuple[bytes, bytes]:
        (client_host, client_port), (server_host, server_port) = self.client.five_tuple[1:]
        c2p, _ = c2p_entry((v4(client_host), client_port), (v4(server_host), server_port), number,
                           (v4(self.relay[0]), self.relay[1]), (v4(peer[0]), peer[1]), 0)
        p2c, _ = p2c_entry((v4(peer[0]), peer[1]), (v4(self.relay[0]), self.relay[1]),
                           (v4(server_host), server_port), (v4(client_host), client_port), number, 0)
        return c2p, p2c

    def test_channel_bind_writes_both_directions(self) -> None:
        """ChannelBind puts the channel in both maps with the addresses the datagrams get (network order)."""
        self.client.channel_bind(0x4001, *PEER)
        c2p_key, p2c_key = self.keys()
        self.assertEqual(list(self.c2p.entries), [c2p_key])
        self.assertEqual(list(self.p2c.entries), [p2c_key])
        relay_ip, peer_ip, relay_port, peer_port, flags = struct.unpack_from("!4s4sHH", self.c2p.entries[c2p_key]) + (
            struct.unpack_from("=I", self.c2p.entries[c2p_key], 12))
        self.assertEqual((socket.inet_ntoa(relay_ip), relay_port), self.relay)
        self.assertEqual((socket.inet_ntoa(peer_ip), peer_port), PEER)
        self.assertEqual(flags, 1, "the peer is local per is_local: the kernel hands it to the local stack")
        server_ip, client_ip, server_port, client_port, channel, back_flags = struct.unpack_from(
            "!4s4sHHH", self.p2c.entries[p2c_key]) + struct.unpack_from("=H", self.p2c.entries[p2c_key], 14)
        self.assertEqual((socket.inet_ntoa(client_ip), client_port), self.client.five_tuple[1])
        self.assertEqual((socket.inet_ntoa(server_ip), server_port), self.client.five_tuple[2])
        self.assertEqual((channel, back_flags), (0x4001, 0))
        self.assertEqual(self.engine.counters.offload_channels, 1)

    def test_a_refresh_of_the_binding_keeps_one_entry_and_its_counts(self) -> None:
        self.client.channel_bind(0x4001, *PEER)
        c2p_key, _ = self.keys()
        self.c2p.count(c2p_key, 3, 300)
        self.client.channel_bind(0x4001, *PEER, now=60)
        self.assertEqual(len(self.c2p.entries), 1)
        self.assertEqual(COUNTS.unpack_from(self.c2p.entries[c2p_key], 16), (3, 300))

    def test_permission_expiry_takes_the_channel_out_at_once(self) -> None:
        """RFC 8656 §9: the peer's permission (300 s) lapses before the channel (600 s): the kernel stops
        forwarding at that moment; a new CreatePermission brings the channel back."""
        self.client.channel_bind(0x4001, *PEER)
        self.engine.handle_timer(now=299)
        self.assertEqual(len(self.c2p.entries), 1)
        self.engine.handle_timer(now=300)
        self.assertEqual((self.c2p.entries, self.p2c.entries), ({}, {}))
        self.assertEqual(self.engine.counters.offload_channels, 0)
        self.client.create_permission(PEER[0], now=301)
        self.assertEqual((len(self.c2p.entries), len(self.p2c.entries)), (1, 1))

    def test_deallocation_and_refresh_zero_take_everything_out(self) -> None:
        self.client.channel_bind(0x4001, *PEER)
        self.client.channel_bind(0x4002, *OTHER_PEER)
        self.assertEqual(len(self.c2p.entries), 2)
        self.client.refresh(0, now=1)
        self.assertEqual((self.c2p.entries, self.p2c.entries), ({}, {}))

    def test_allocation_expiry_and_close_take_everything_out(self) -> None:
        self.client.channel_bind(0x4001, *PEER)
        self.engine.handle_timer(now=601)
        self.assertEqual((self.c2p.entries, self.p2c.entries), ({}, {}))
        other = Client(self.engine, client=("198.51.100.8", 40001))
        other.allocate(now=700)
        other.channel_bind(0x4001, *PEER, now=700)
        self.assertEqual(len(self.c2p.entries), 1)
        self.engine.close()
        self.assertEqual((self.c2p.entries, self.p2c.entries), ({}, {}))

    def test_counts_are_credited_once_and_at_the_end(self) -> None:
        """What the kernel counted reaches the engine's counters and the allocation's totals: every
        second (collect) and when the entry goes (nothing is lost between the last collect and the end)."""
        self.client.channel_bind(0x4001, *PEER)
        c2p_key, p2c_key = self.keys()
        counters = self.engine.counters
        self.c2p.count(c2p_key, 10, 1000)
        self.p2c.count(p2c_key, 4, 400)
        self.routes.collect()
        self.routes.collect()
        self.assertEqual((counters.packets_to_peer, counters.bytes_to_peer), (10, 1000))
        self.assertEqual((counters.offload_packets_to_client, counters.offload_bytes_to_client), (4, 400))
        self.assertEqual((self.allocation.bytes_to_peer, self.allocation.bytes_to_client), (1000, 400))
        self.c2p.count(c2p_key, 12, 1200)
        self.client.refresh(0, now=1)
        self.assertEqual((counters.packets_to_peer, counters.offload_packets_to_peer), (12, 12))
        self.assertEqual(self.allocation.bytes_to_peer, 1200)

    def test_many_routes_are_collected_in_batches(self) -> None:
        """Past BATCH_ABOVE routes each map is read whole once per collection, with the same credits."""
        from webrtcstack.turn.offload.routes import BATCH_ABOVE

        engine, _ = make_engine(user_quota=0)
        c2p, p2c = DictMap(), DictMap()
        routes = engine.manager.routes = KernelRoutes(c2p, p2c, engine.counters, lambda host: False)
        clients = []
        for i in range(BATCH_ABOVE + 1):
            client = Client(engine, client=(f"198.51.100.{10 + i}", 41000))
            client.allocate()
            client.channel_bind(0x4001, *PEER)
            clients.append(client)
        for key in c2p.entries:
            c2p.count(key, 2, 200)
        routes.collect()
        self.assertEqual((c2p.batch_reads, p2c.batch_reads), (1, 1))
        self.assertEqual(engine.counters.offload_packets_to_peer, 2 * (BATCH_ABOVE + 1))
        allocation = engine.manager.get(clients[0].five_tuple)
        self.assertEqual(allocation.bytes_to_peer, 200)

    def test_mobility_moves_the_entries(self) -> None:
        """RFC 8016: the allocation's new 5-tuple replaces the old one in the kernel's key."""
        self.client.channel_bind(0x4001, *PEER)
        old_key, _ = self.keys()
        from webrtcstack.turn.five_tuple import FiveTuple

        new = FiveTuple(Transport.UDP, ("198.51.100.7", 40999), self.client.five_tuple[2])
        self.engine.manager.move(self.allocation, new, self.client.to_client)
        self.client.five_tuple = new
        new_key, p2c_key = self.keys()
        self.assertEqual(list(self.c2p.entries), [new_key])
        self.assertNotEqual(old_key, new_key)
        self.assertEqual(list(self.p2c.entries), [p2c_key])

    def test_only_what_the_kernel_can_do_alike_is_offloaded(self) -> None:
        """A rate-limited allocation, a stream client and an IPv6 peer stay on the Python path."""
        self.client.channel_bind(0x4001, "2001:db8::20", 6000)
        self.assertEqual(self.c2p.entries, {})
        engine, _ = make_engine(max_bps=1_000_000)
        c2p = DictMap()
        engine.manager.routes = KernelRoutes(c2p, DictMap(), engine.counters, lambda host: False)
        limited = Client(engine)
        limited.allocate()
        limited.channel_bind(0x4001, *PEER)
        self.assertEqual(c2p.entries, {})
        tcp = Client(self.engine, client=("198.51.100.9", 40002), transport=Transport.TCP)
        tcp.allocate()
        tcp.channel_bind(0x4001, *PEER)
        self.assertEqual(self.c2p.entries, {})
        self.client.channel_bind(0x4002, *PEER)
        self.assertEqual(len(self.c2p.entries), 1)

    def test_a_full_map_leaves_the_channel_on_the_python_path(self) -> None:
        self.c2p.max_entries = 1
        self.client.channel_bind(0x4001, *PEER)
        self.client.channel_bind(0x4002, *OTHER_PEER)
        self.assertEqual((len(self.c2p.entries), len(self.p2c.entries)), (1, 1))
        self.assertEqual(self.engine.counters.offload_refused, 1)
        # the Python fast path still has the second channel
        self.assertIn((self.client.five_tuple, 0x4002), self.engine.fast_path.channels)

    def test_a_denied_peer_never_gets_an_entry(self) -> None:
        """The peer policy refuses 127.0.0.1 by default: ChannelBind fails and the kernel learns nothing."""
        reply = self.client.channel_bind(0x4001, "127.0.0.1", 6000)
        self.assertEqual(reply.msg_class.name, "ERROR")
        self.assertEqual((self.c2p.entries, self.p2c.entries), ({}, {}))
