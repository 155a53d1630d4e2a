"""Sans-IO tests for :class:`webrtcstack.turn.engine.TurnEngine` (no reactor; time is a number)."""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.stun.constants import MAGIC_COOKIE, AttrType, Method, MessageClass
from webrtcstack.turn.auth import PasswordAlgorithm, long_term_key, rest_password
from webrtcstack.stun.message import Message, encode
from webrtcstack.stun.attributes import encode_value
from webrtcstack.turn import engine as engine_module
from webrtcstack.stun.message import encode_response, packed_xor_address
from webrtcstack.turn.engine import TurnSettings
from webrtcstack.turn.five_tuple import Transport
from webrtcstack.turn.policy import PeerPolicy

from tests.stun.strategies import ATTRIBUTE_VALUES, unknown_attribute

from . import msgs
from .support import REALM, Client, error_code, lifetime, make_engine, relayed

TRANSPORT_UDP = [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))]


def verify(data: bytes, key: bytes, sha256: bool = False) -> bool:
    return msgs.verify(data, key, sha256)


class BindingTests(SynchronousTestCase):
    def test_binding(self) -> None:
        """A Binding request gets XOR-MAPPED-ADDRESS with the client's address and no auth."""
        engine, _ = make_engine()
        client = Client(engine)
        reply = client.send_raw(msgs.encode(Method.BINDING, MessageClass.REQUEST, b"t" * 12, [], fingerprint=True))
        assert reply is not None
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
        self.assertEqual(msgs.parse_xor_address(reply.get(AttrType.XOR_MAPPED_ADDRESS), b"t" * 12), client.five_tuple.client)
        self.assertIn(AttrType.FINGERPRINT, reply)

    def test_garbage_dropped(self) -> None:
        """Bytes that are not STUN are dropped, counted, and get no reply."""
        engine, _ = make_engine()
        self.assertIsNone(Client(engine).send_raw(b"\x00\x01\x00\x00hello"))
        self.assertEqual(engine.counters.dropped["malformed"], 1)

    def test_unknown_method(self) -> None:
        """A request for a method we do not know gets 400."""
        engine, _ = make_engine()
        reply = Client(engine).send_raw(msgs.encode(0x0FF, MessageClass.REQUEST, b"t" * 12, []))
        self.assertEqual(error_code(reply), 400)


class AuthTests(SynchronousTestCase):
    def test_challenge(self) -> None:
        """An unsigned Allocate gets 401 with REALM, a cookie NONCE and PASSWORD-ALGORITHMS, and no state."""
        engine, _ = make_engine()
        client = Client(engine)
        reply = client.send_raw(client.build(Method.ALLOCATE, TRANSPORT_UDP, sign=False))
        assert reply is not None
        self.assertEqual(error_code(reply), 401)
        self.assertEqual(reply.get(AttrType.ERROR_CODE)[4:], b"")  # no reason phrase
        self.assertEqual(reply.get(AttrType.REALM), REALM.encode())
        self.assertTrue(reply.get(AttrType.NONCE).startswith(b"obMatJos2AAAD"))
        self.assertEqual(reply.get(AttrType.PASSWORD_ALGORITHMS), bytes.fromhex("0001000000020000"))
        self.assertNotIn(AttrType.SOFTWARE, reply)
        self.assertNotIn(AttrType.MESSAGE_INTEGRITY, reply)
        self.assertEqual((engine.allocation_count(), len(engine.transactions)), (0, 0))
        self.assertEqual(engine.counters.auth_failures, {"no_credentials": 1})

    def test_missing_username(self) -> None:
        """A signed request without USERNAME gets 400."""
        engine, _ = make_engine()
        client = Client(engine)
        client.fetch_nonce()
        raw = msgs.encode(Method.ALLOCATE, MessageClass.REQUEST, os.urandom(12),
                          TRANSPORT_UDP + [(AttrType.REALM, REALM.encode()), (AttrType.NONCE, client.nonce)], key=client.key)
        self.assertEqual(error_code(client.send_raw(raw)), 400)

    def test_wrong_password(self) -> None:
        """A wrong password gets 401 and no allocation."""
        engine, _ = make_engine()
        client = Client(engine, password="wrong")
        self.assertEqual(error_code(client.allocate()), 401)
        self.assertEqual(engine.allocation_count(), 0)
        self.assertEqual(engine.counters.auth_failures["bad_integrity"], 1)

    def test_unknown_user(self) -> None:
        """An unknown user gets 401."""
        engine, _ = make_engine()
        self.assertEqual(error_code(Client(engine, username="mallory").allocate()), 401)

    def test_wrong_realm(self) -> None:
        """A REALM other than ours gets 401."""
        engine, _ = make_engine()
        client = Client(engine)
        client.fetch_nonce()
        raw = msgs.encode(Method.ALLOCATE, MessageClass.REQUEST, os.urandom(12),
                          TRANSPORT_UDP + [(AttrType.USERNAME, b"alice"), (AttrType.REALM, b"other"), (AttrType.NONCE, client.nonce)],
                          key=long_term_key("alice", "other", "secret-a"))
        self.assertEqual(error_code(client.send_raw(raw)), 401)

    def test_stale_nonce(self) -> None:
        """A nonce older than nonce_lifetime_s gets 438 with a fresh nonce that then works."""
        engine, _ = make_engine(nonce_lifetime_s=60)
        clock = Clock()
        client = Client(engine)
        client.fetch_nonce(clock.seconds())
        clock.advance(60)
        reply = client.allocate(now=clock.seconds())
        self.assertEqual(error_code(reply), 438)
        client.nonce = reply.get(AttrType.NONCE)
        self.assertIsNone(error_code(client.allocate(now=clock.seconds())))

    def test_nonce_bound_to_address(self) -> None:
        """A nonce given to one address gets 438 from another."""
        engine, _ = make_engine()
        first, second = Client(engine), Client(engine, client=("198.51.100.8", 40000))
        first.fetch_nonce()
        second.nonce = first.nonce
        self.assertEqual(error_code(second.allocate()), 438)

    def test_response_integrity(self) -> None:
        """A success is signed with the user's key and carries SOFTWARE."""
        engine, _ = make_engine()
        client = Client(engine)
        reply = client.allocate()
        self.assertTrue(verify(client.last_reply, client.key))
        self.assertEqual(reply.get(AttrType.SOFTWARE), b"webrtcstack")

    def test_sha256(self) -> None:
        """A client choosing SHA-256 with MESSAGE-INTEGRITY-SHA256 gets a SHA-256 signed answer."""
        engine, _ = make_engine()
        client = Client(engine)
        client.algorithm = PasswordAlgorithm.SHA256
        reply = client.allocate()
        self.assertIsNone(error_code(reply))
        self.assertIn(AttrType.MESSAGE_INTEGRITY_SHA256, reply)
        self.assertNotIn(AttrType.MESSAGE_INTEGRITY, reply)
        self.assertTrue(verify(client.last_reply, long_term_key("alice", REALM, "secret-a", PasswordAlgorithm.SHA256), True))

    def test_md5_algorithm_explicit(self) -> None:
        """A client choosing MD5 through PASSWORD-ALGORITHM is served with plain MESSAGE-INTEGRITY."""
        engine, _ = make_engine()
        client = Client(engine)
        client.algorithm = PasswordAlgorithm.MD5
        self.assertIsNone(error_code(client.allocate()))

    def test_algorithms_tampered(self) -> None:
        """PASSWORD-ALGORITHMS that differ from our offer (a downgrade) get 400."""
        engine, _ = make_engine()
        client = Client(engine)
        client.fetch_nonce()
        attrs = TRANSPORT_UDP + [(AttrType.USERNAME, b"alice"), (AttrType.REALM, REALM.encode()), (AttrType.NONCE, client.nonce),
                                 (AttrType.PASSWORD_ALGORITHMS, msgs.password_algorithms_value((1,))),
                                 (AttrType.PASSWORD_ALGORITHM, struct.pack("!HH", 1, 0))]
        raw = msgs.encode(Method.ALLOCATE, MessageClass.REQUEST, os.urandom(12), attrs, key=client.key)
        self.assertEqual(error_code(client.send_raw(raw)), 400)

    def test_userhash(self) -> None:
        """USERHASH in place of USERNAME authenticates a static user."""
        engine, _ = make_engine()
        client = Client(engine)
        client.use_userhash = True
        client.algorithm = PasswordAlgorithm.SHA256
        self.assertIsNone(error_code(client.allocate()))

    def test_rest_secret(self) -> None:
        """A REST API username/password made with any configured secret works until its expiry."""
        engine, _ = make_engine(secrets=("old-secret", "new-secret"))
        for i, secret in enumerate(("old-secret", "new-secret")):
            username = "5000:carol"
            client = Client(engine, client=("198.51.100.7", 41000 + i), username=username,
                            password=rest_password(secret, username))
            self.assertIsNone(error_code(client.allocate(now=1000)))
        expired = Client(engine, client=("198.51.100.7", 42000), username="999:carol",
                         password=rest_password("new-secret", "999:carol"))
        self.assertEqual(error_code(expired.allocate(now=1000)), 401)
        self.assertEqual(engine.counters.auth_failures["expired"], 1)

    def test_challenges_rate_limited(self) -> None:
        """401 replies per source address are limited per second; the excess is dropped silently."""
        engine, _ = make_engine(unauthenticated_replies_per_second=5)
        client = Client(engine)
        raw = client.build(Method.ALLOCATE, TRANSPORT_UDP, sign=False)
        replies = [client.send_raw(raw, now=10.0) for _ in range(8)]
        self.assertEqual(sum(r is not None for r in replies), 5)
        self.assertIsNotNone(client.send_raw(raw, now=11.0))
        self.assertIsNotNone(Client(engine, client=("198.51.100.99", 1)).send_raw(raw, now=10.0))

    def test_attributes_after_integrity_ignored(self) -> None:
        """An attribute appended after MESSAGE-INTEGRITY (FINGERPRINT recomputed) has no effect."""
        engine, _ = make_engine()
        client = Client(engine)
        client.allocate()
        signed = client.build(Method.REFRESH, [])
        body = signed[20:] + struct.pack("!HHI", AttrType.LIFETIME, 4, 0)
        header = struct.pack("!HHI", struct.unpack_from("!H", signed)[0], len(body) + 8, MAGIC_COOKIE) + signed[8:20]
        import binascii
        crc = (binascii.crc32(header + body) ^ 0x5354554E) & 0xFFFFFFFF
        tampered = header + body + struct.pack("!HHI", AttrType.FINGERPRINT, 4, crc)
        reply = client.send_raw(tampered)
        self.assertIsNone(error_code(reply))
        self.assertEqual(lifetime(reply), 600)
        self.assertEqual(engine.allocation_count(), 1)

    def test_unknown_required_attribute(self) -> None:
        """An unknown comprehension-required attribute gets 420 listing it."""
        engine, _ = make_engine()
        client = Client(engine)
        reply = client.allocate([(0x7F00, b"abcd")])
        self.assertEqual(error_code(reply), 420)
        self.assertEqual(reply.get(AttrType.UNKNOWN_ATTRIBUTES), b"\x7f\x00")

    def test_wrong_credentials(self) -> None:
        """A request on an allocation from another user gets 441."""
        engine, _ = make_engine()
        alice = Client(engine)
        alice.allocate()
        bob = Client(engine, username="bob", password="secret-b")
        self.assertEqual(error_code(bob.refresh()), 441)


class AllocateTests(SynchronousTestCase):
    def test_allocate(self) -> None:
        """Allocate gives the advertised relayed address, 600 s and XOR-MAPPED-ADDRESS."""
        engine, opener = make_engine()
        client = Client(engine)
        reply = client.allocate()
        self.assertIsNone(error_code(reply))
        [(host, port)] = relayed(reply)
        self.assertEqual(host, "203.0.113.5")
        self.assertTrue(50000 <= port <= 50099)
        self.assertEqual(opener.relays[0].address, ("10.0.0.1", port))
        self.assertEqual(lifetime(reply), 600)
        self.assertEqual(msgs.parse_xor_address(reply.get(AttrType.XOR_MAPPED_ADDRESS), reply.transaction_id),
                         client.five_tuple.client)
        self.assertEqual(engine.counters.allocations_active, {("ipv4", "udp"): 1})

    def test_retransmission(self) -> None:
        """A retransmitted Allocate gets the identical answer and makes no second allocation."""
        engine, opener = make_engine()
        client = Client(engine)
        client.fetch_nonce()
        raw = client.build(Method.ALLOCATE, TRANSPORT_UDP)
        first = client.engine.handle_client_packet(client.five_tuple, raw, client.to_client, now=0)
        again = client.engine.handle_client_packet(client.five_tuple, raw, client.to_client, now=1)
        self.assertEqual(first, again)
        self.assertEqual(len(opener.relays), 1)
        self.assertEqual(error_code(client.allocate()), 437)

    def test_requested_transport(self) -> None:
        """No REQUESTED-TRANSPORT is 400, and TCP (6) is 442."""
        engine, _ = make_engine()
        client = Client(engine)
        self.assertEqual(error_code(client.request(Method.ALLOCATE, [])), 400)
        reply = client.request(Method.ALLOCATE, [(AttrType.REQUESTED_TRANSPORT, bytes((6, 0, 0, 0)))])
        self.assertEqual(error_code(reply), 442)

    def test_lifetime_clamped(self) -> None:
        """A requested lifetime is capped at max_lifetime_s and never below the default."""
        engine, _ = make_engine()
        self.assertEqual(lifetime(Client(engine).allocate([(AttrType.LIFETIME, struct.pack("!I", 99999))])), 3600)
        other = Client(engine, client=("198.51.100.7", 1))
        self.assertEqual(lifetime(other.allocate([(AttrType.LIFETIME, struct.pack("!I", 10))])), 600)

    def test_expiry(self) -> None:
        """An allocation not refreshed ends after its lifetime: relay closed, port returned."""
        engine, opener = make_engine()
        clock = Clock()
        client = Client(engine)
        client.allocate(now=clock.seconds())
        self.assertEqual(engine.next_deadline(), 40.0)  # the transaction cache entry goes first
        clock.advance(599)
        engine.handle_timer(now=clock.seconds())
        self.assertEqual(engine.allocation_count(), 1)
        clock.advance(1)
        engine.handle_timer(now=clock.seconds())
        self.assertEqual(engine.allocation_count(), 0)
        self.assertTrue(opener.relays[0].closed)
        self.assertEqual(engine.manager.pools[4].free_count(), 100)
        self.assertEqual(engine.counters.allocations_active, {("ipv4", "udp"): 0})
        self.assertIsNone(engine.next_deadline())

    def test_refresh_extends(self) -> None:
        """A Refresh moves the expiry; the old deadline passes harmlessly."""
        engine, _ = make_engine()
        client = Client(engine)
        client.allocate(now=0)
        self.assertEqual(lifetime(client.refresh(1200, now=500)), 1200)
        engine.handle_timer(now=600)
        self.assertEqual(engine.allocation_count(), 1)
        engine.handle_timer(now=1700)
        self.assertEqual(engine.allocation_count(), 0)

    def test_refresh_zero_deletes(self) -> None:
        """Refresh with lifetime 0 deletes the allocation and returns its port."""
        engine, opener = make_engine()
        client = Client(engine)
        client.allocate()
        reply = client.refresh(0)
        self.assertEqual(lifetime(reply), 0)
        self.assertEqual(engine.allocation_count(), 0)
        self.assertEqual(engine.manager.pools[4].free_count(), 100)
        self.assertEqual(error_code(client.refresh()), 437)

    def test_refresh_without_allocation(self) -> None:
        """Refresh, CreatePermission and ChannelBind without an allocation get 437."""
        engine, _ = make_engine()
        client = Client(engine)
        self.assertEqual(error_code(client.refresh()), 437)
        self.assertEqual(error_code(client.create_permission("8.8.8.8")), 437)
        self.assertEqual(error_code(client.channel_bind(0x4000, "8.8.8.8", 1)), 437)

    def test_connection_lost(self) -> None:
        """An allocation made over TCP ends when the connection closes."""
        engine, opener = make_engine()
        client = Client(engine, transport=Transport.TCP)
        client.allocate()
        self.assertEqual(engine.counters.allocations_active, {("ipv4", "tcp"): 1})
        engine.handle_connection_lost(client.five_tuple, now=1)
        self.assertEqual(engine.allocation_count(), 0)
        self.assertTrue(opener.relays[0].closed)
        self.assertEqual(engine.manager.pools[4].free_count(), 100)

    def test_dont_fragment(self) -> None:
        """DONT-FRAGMENT is accepted and handed to the relay opener."""
        engine, opener = make_engine()
        self.assertIsNone(error_code(Client(engine).allocate([(AttrType.DONT_FRAGMENT, b"")])))
        self.assertEqual(opener.dont_fragment, [True])


class FamilyTests(SynchronousTestCase):
    def test_ipv6(self) -> None:
        """REQUESTED-ADDRESS-FAMILY IPv6 gives an IPv6 relayed address."""
        engine, _ = make_engine()
        reply = Client(engine).allocate([(AttrType.REQUESTED_ADDRESS_FAMILY, bytes((2, 0, 0, 0)))])
        self.assertEqual(relayed(reply)[0][0], "2001:db8::5")
        self.assertEqual(engine.counters.allocations_active, {("ipv6", "udp"): 1})

    def test_bad_family(self) -> None:
        """An unknown family gets 440, and a family with no relay address gets 440."""
        engine, _ = make_engine()
        reply = Client(engine).allocate([(AttrType.REQUESTED_ADDRESS_FAMILY, bytes((3, 0, 0, 0)))])
        self.assertEqual(error_code(reply), 440)
        v4only, _ = make_engine(relay_hosts={4: "10.0.0.1"}, advertised_hosts={4: "10.0.0.1"})
        reply = Client(v4only).allocate([(AttrType.REQUESTED_ADDRESS_FAMILY, bytes((2, 0, 0, 0)))])
        self.assertEqual(error_code(reply), 440)

    def test_dual(self) -> None:
        """ADDITIONAL-ADDRESS-FAMILY IPv6 gives an IPv4 and an IPv6 relayed address."""
        engine, opener = make_engine()
        reply = Client(engine).allocate([(AttrType.ADDITIONAL_ADDRESS_FAMILY, bytes((2, 0, 0, 0)))])
        self.assertEqual([h for h, _ in relayed(reply)], ["203.0.113.5", "2001:db8::5"])
        self.assertEqual(len(opener.relays), 2)
        self.assertEqual(engine.counters.allocations_active, {("dual", "udp"): 1})

    def test_dual_partial(self) -> None:
        """A dual allocation without IPv6 relaying succeeds for IPv4 with ADDRESS-ERROR-CODE 440."""
        engine, _ = make_engine(relay_hosts={4: "10.0.0.1"}, advertised_hosts={4: "10.0.0.1"})
        reply = Client(engine).allocate([(AttrType.ADDITIONAL_ADDRESS_FAMILY, bytes((2, 0, 0, 0)))])
        self.assertIsNone(error_code(reply))
        self.assertEqual(len(relayed(reply)), 1)
        self.assertEqual(reply.get(AttrType.ADDRESS_ERROR_CODE), bytes((2, 0, 4, 40)))

    def test_family_conflicts(self) -> None:
        """Both family attributes, or an additional IPv4 family, get 400."""
        engine, _ = make_engine()
        both = [(AttrType.REQUESTED_ADDRESS_FAMILY, bytes((1, 0, 0, 0))), (AttrType.ADDITIONAL_ADDRESS_FAMILY, bytes((2, 0, 0, 0)))]
        self.assertEqual(error_code(Client(engine).allocate(both)), 400)
        v4 = [(AttrType.ADDITIONAL_ADDRESS_FAMILY, bytes((1, 0, 0, 0)))]
        self.assertEqual(error_code(Client(engine).allocate(v4)), 400)

    def test_peer_family_mismatch(self) -> None:
        """An IPv6 peer on an IPv4 allocation gets 443, and so does a Refresh for a missing family."""
        engine, _ = make_engine()
        client = Client(engine)
        client.allocate()
        self.assertEqual(error_code(client.create_permission("2a00:1450::1")), 443)
        self.assertEqual(error_code(client.channel_bind(0x4000, "2a00:1450::1", 5)), 443)
        reply = client.refresh(attrs=[(AttrType.REQUESTED_ADDRESS_FAMILY, bytes((2, 0, 0, 0)))])
        self.assertEqual(error_code(reply), 443)


class EvenPortTests(SynchronousTestCase):
    def test_even_port_reservation(self) -> None:
        """EVEN-PORT R=1 gives an even port and binds the next, which a token then allocates."""
        engine, opener = make_engine()
        reply = Client(engine).allocate([(AttrType.EVEN_PORT, b"\x80")])
        port = relayed(reply)[0][1]
        self.assertEqual(port % 2, 0)
        token = reply.get(AttrType.RESERVATION_TOKEN)
        self.assertEqual(len(token), 8)
        self.assertEqual([r.address[1] for r in opener.relays], [port, port + 1])  # bound at once
        second_client = Client(engine, client=("198.51.100.7", 2))
        second = second_client.allocate([(AttrType.RESERVATION_TOKEN, token)])
        self.assertEqual(relayed(second)[0][1], port + 1)
        self.assertEqual(len(opener.relays), 2)
        self.assertIs(opener.relays[1].allocation, engine.manager.allocations[second_client.five_tuple])

    def test_reservation_expires(self) -> None:
        """An unused reservation closes its socket, returns its port, and its token stops working."""
        engine, opener = make_engine()
        token = Client(engine).allocate([(AttrType.EVEN_PORT, b"\x80")]).get(AttrType.RESERVATION_TOKEN)
        self.assertEqual(engine.manager.pools[4].free_count(), 98)
        engine.handle_timer(now=30)
        self.assertEqual(engine.manager.pools[4].free_count(), 99)
        self.assertTrue(opener.relays[1].closed)
        reply = Client(engine, client=("198.51.100.7", 2)).allocate([(AttrType.RESERVATION_TOKEN, token)], now=31)
        self.assertEqual(error_code(reply), 508)

    def test_even_port_no_reserve(self) -> None:
        """EVEN-PORT R=0 gives an even port and holds nothing else."""
        engine, _ = make_engine()
        reply = Client(engine).allocate([(AttrType.EVEN_PORT, b"\x00")])
        self.assertEqual(relayed(reply)[0][1] % 2, 0)
        self.assertNotIn(AttrType.RESERVATION_TOKEN, reply)
        self.assertEqual(engine.manager.pools[4].free_count(), 99)

    def test_token_with_even_port(self) -> None:
        """RESERVATION-TOKEN together with EVEN-PORT or a family gets 400."""
        engine, _ = make_engine()
        reply = Client(engine).allocate([(AttrType.EVEN_PORT, b"\x00"), (AttrType.RESERVATION_TOKEN, b"12345678")])
        self.assertEqual(error_code(reply), 400)
        reply = Client(engine).allocate([(AttrType.REQUESTED_ADDRESS_FAMILY, bytes((1, 0, 0, 0))),
                                         (AttrType.RESERVATION_TOKEN, b"12345678")])
        self.assertEqual(error_code(reply), 400)


class QuotaTests(SynchronousTestCase):
    def test_user_quota(self) -> None:
        """A user past user_quota gets 486; others are unaffected."""
        engine, _ = make_engine(user_quota=1)
        self.assertIsNone(error_code(Client(engine, client=("198.51.100.7", 1)).allocate()))
        self.assertEqual(error_code(Client(engine, client=("198.51.100.7", 2)).allocate()), 486)
        self.assertIsNone(error_code(Client(engine, client=("198.51.100.7", 3), username="bob", password="secret-b").allocate()))
        self.assertEqual(engine.counters.quota_hits, {"user": 1})

    def test_total_quota(self) -> None:
        """Past total_quota every user gets 508."""
        engine, _ = make_engine(total_quota=1)
        Client(engine, client=("198.51.100.7", 1)).allocate()
        reply = Client(engine, client=("198.51.100.7", 2), username="bob", password="secret-b").allocate()
        self.assertEqual(error_code(reply), 508)

    def test_ports_exhausted(self) -> None:
        """When the port range is used up, Allocate gets 508."""
        engine, _ = make_engine(relay_ports=(50000, 50001), user_quota=0)
        for i in range(2):
            self.assertIsNone(error_code(Client(engine, client=("198.51.100.7", i)).allocate()))
        self.assertEqual(error_code(Client(engine, client=("198.51.100.7", 9)).allocate()), 508)

    def test_busy_ports_returned(self) -> None:
        """Ports that fail to bind, and every port of a failed Allocate, go back to the pool."""
        engine, opener = make_engine(relay_ports=(50000, 50003))
        opener.busy = {50000, 50001, 50002, 50003}
        self.assertEqual(error_code(Client(engine).allocate()), 508)
        self.assertEqual(engine.manager.pools[4].free_count(), 4)
        opener.busy = {50000, 50001, 50002}
        reply = Client(engine, client=("198.51.100.7", 2)).allocate()
        self.assertEqual(relayed(reply)[0][1], 50003)
        self.assertEqual(engine.manager.pools[4].free_count(), 3)

    def test_pool_returns_to_start(self) -> None:
        """Allocating and freeing in a loop, on every path, leaves the pool as it started."""
        engine, _ = make_engine(relay_ports=(50000, 50009), user_quota=0)
        start = engine.manager.pools[4].free_count()
        now = 0.0
        for i in range(30):
            client = Client(engine, client=("198.51.100.7", 1000 + i),
                            transport=Transport.TCP if i % 3 == 1 else Transport.UDP)
            reply = client.allocate([(AttrType.EVEN_PORT, b"\x80")] if i % 5 == 0 else [], now=now)
            self.assertIsNone(error_code(reply))
            if i % 3 == 0:
                client.refresh(0, now=now)
            elif i % 3 == 1:
                engine.handle_connection_lost(client.five_tuple, now=now)
            else:
                now += 700
                engine.handle_timer(now=now)
        now += 700
        engine.handle_timer(now=now)
        self.assertEqual(engine.allocation_count(), 0)
        self.assertEqual(engine.manager.pools[4].free_count(), start)

    def test_max_permissions(self) -> None:
        """Permissions past max_permissions get 508."""
        engine, _ = make_engine(max_permissions=2)
        client = Client(engine)
        client.allocate()
        self.assertIsNone(error_code(client.create_permission("8.8.8.8", "8.8.4.4")))
        self.assertIsNone(error_code(client.create_permission("8.8.8.8")))
        self.assertEqual(error_code(client.create_permission("1.1.1.1")), 508)

    def test_max_channels(self) -> None:
        """Channels past max_channels get 508."""
        engine, _ = make_engine(max_channels=1)
        client = Client(engine)
        client.allocate()
        self.assertIsNone(error_code(client.channel_bind(0x4000, "8.8.8.8", 1)))
        self.assertEqual(error_code(client.channel_bind(0x4001, "8.8.8.8", 2)), 508)


class PermissionChannelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.opener = make_engine()
        self.client = Client(self.engine)
        self.client.allocate()
        self.relay = self.opener.relays[0]
        self.allocation = self.engine.manager.allocations[self.client.five_tuple]

    def test_permission_then_data_indication(self) -> None:
        """A permitted peer's datagram reaches the client as a Data indication; others are dropped."""
        self.assertIsNone(error_code(self.client.create_permission("8.8.8.8")))
        self.allocation.handle_peer_datagram(b"hello", ("8.8.8.8", 999), 1)
        self.allocation.handle_peer_datagram(b"nope", ("8.8.4.4", 999), 1)
        [data] = self.client.received
        message = msgs.decode(data)
        self.assertEqual((message.method, message.msg_class), (Method.DATA, MessageClass.INDICATION))
        self.assertEqual(message.get(AttrType.DATA), b"hello")
        self.assertEqual(msgs.parse_xor_address(message.get(AttrType.XOR_PEER_ADDRESS), message.transaction_id), ("8.8.8.8", 999))
        self.assertEqual(self.engine.counters.dropped["no_permission"], 1)

    def test_indication_id_made_on_first_data_indication(self) -> None:
        """An allocation draws its Data indication transaction ID on its first Data indication, then keeps it."""
        self.assertEqual(self.allocation._indication_id, b"")
        self.client.create_permission("8.8.8.8")
        self.allocation.handle_peer_datagram(b"a", ("8.8.8.8", 1), 1)
        self.allocation.handle_peer_datagram(b"b", ("8.8.8.8", 2), 1)
        first, second = (msgs.decode(d) for d in self.client.received)
        self.assertEqual(len(first.transaction_id), 12)
        self.assertNotEqual(first.transaction_id, bytes(12))
        self.assertEqual(first.transaction_id, second.transaction_id)
        other = Client(self.engine, ("198.51.100.8", 40000))
        other.allocate()
        other.create_permission("8.8.8.8")
        self.engine.manager.allocations[other.five_tuple].handle_peer_datagram(b"c", ("8.8.8.8", 1), 1)
        self.assertNotEqual(msgs.decode(other.received[-1]).transaction_id, first.transaction_id)

    def test_permission_expiry(self) -> None:
        """A permission lasts 300 s; after that peer data is dropped."""
        self.client.create_permission("8.8.8.8", now=0)
        self.engine.handle_timer(now=299)
        self.assertIn("8.8.8.8", self.allocation.permissions)
        self.engine.handle_timer(now=300)
        self.assertNotIn("8.8.8.8", self.allocation.permissions)
        self.allocation.handle_peer_datagram(b"late", ("8.8.8.8", 1), 300)
        self.assertEqual(self.client.received, [])
        self.assertEqual(self.engine.counters.permissions_active, 0)

    def test_send_indication(self) -> None:
        """A Send indication reaches a permitted peer and is dropped for an unpermitted one."""
        self.client.create_permission("8.8.8.8")
        self.client.send_indication("8.8.8.8", 53, b"query")
        self.client.send_indication("8.8.4.4", 53, b"nope")
        self.assertEqual(self.relay.sent, [(b"query", ("8.8.8.8", 53))])
        self.assertEqual(self.engine.counters.packets_to_peer, 1)

    def test_send_data_past_end(self) -> None:
        """A Send indication whose DATA claims more bytes than the datagram has is dropped."""
        self.client.create_permission("8.8.8.8")
        tid = os.urandom(12)
        good = msgs.encode(Method.SEND, MessageClass.INDICATION, tid,
                           [self.client.peer_attr("8.8.8.8", 53, tid), (AttrType.DATA, b"abcd")])
        bad = bytearray(good)
        bad[-6:-4] = struct.pack("!H", 200)  # DATA length field
        self.assertIsNone(self.client.send_raw(bytes(bad)))
        self.assertEqual(self.relay.sent, [])
        self.assertEqual(self.engine.counters.dropped["malformed"], 1)

    def test_channel_data_both_ways(self) -> None:
        """After ChannelBind, ChannelData goes to the peer and peer data comes back as ChannelData."""
        self.assertIsNone(error_code(self.client.channel_bind(0x4001, "8.8.8.8", 5000)))
        self.client.send_raw(struct.pack("!HH", 0x4001, 3) + b"abc")
        self.assertEqual(self.relay.sent, [(b"abc", ("8.8.8.8", 5000))])
        self.allocation.handle_peer_datagram(b"xyz", ("8.8.8.8", 5000), 0)
        self.assertEqual(self.client.received, [struct.pack("!HH", 0x4001, 3) + b"xyz"])
        # Another port of the same peer IP has a permission but no channel: Data indication.
        self.allocation.handle_peer_datagram(b"ind", ("8.8.8.8", 5001), 0)
        self.assertEqual(msgs.decode(self.client.received[1]).method, Method.DATA)

    def test_channel_data_stream_padding(self) -> None:
        """On a stream transport, ChannelData to the client is padded to 4 bytes."""
        engine, _ = make_engine()
        client = Client(engine, transport=Transport.TCP)
        client.allocate()
        client.channel_bind(0x4000, "8.8.8.8", 1)
        engine.manager.allocations[client.five_tuple].handle_peer_datagram(b"abcde", ("8.8.8.8", 1), 0)
        self.assertEqual(client.received, [b"\x40\x00\x00\x05abcde\0\0\0"])

    def test_channel_data_length_past_end(self) -> None:
        """ChannelData whose length claims more than the datagram has is dropped."""
        self.client.channel_bind(0x4001, "8.8.8.8", 5000)
        self.client.send_raw(struct.pack("!HH", 0x4001, 10) + b"abc")
        self.client.send_raw(b"\x40\x01")
        self.assertEqual(self.relay.sent, [])
        self.assertEqual(self.engine.counters.dropped["malformed"], 2)

    def test_channel_data_padding_ignored(self) -> None:
        """Bytes after the ChannelData length (padding) are not forwarded."""
        self.client.channel_bind(0x4001, "8.8.8.8", 5000)
        self.client.send_raw(struct.pack("!HH", 0x4001, 1) + b"a\0\0\0")
        self.assertEqual(self.relay.sent, [(b"a", ("8.8.8.8", 5000))])

    def test_unbound_channel(self) -> None:
        """ChannelData on a channel that is not bound is dropped."""
        self.client.send_raw(struct.pack("!HH", 0x4005, 1) + b"a")
        self.assertEqual(self.engine.counters.dropped["no_channel"], 1)

    def test_channel_numbers_rfc8656(self) -> None:
        """With legacy_channel_numbers off, numbers outside 0x4000-0x4FFF get 400."""
        engine, _ = make_engine(legacy_channel_numbers=False)
        client = Client(engine)
        client.allocate()
        self.assertEqual(error_code(client.channel_bind(0x3FFF, "8.8.8.8", 1)), 400)
        self.assertEqual(error_code(client.channel_bind(0x5000, "8.8.8.8", 1)), 400)
        self.assertIsNone(error_code(client.channel_bind(0x4FFF, "8.8.8.8", 1)))

    def test_channel_numbers_legacy(self) -> None:
        """By default the RFC 5766 range up to 0x7FFE is accepted too, and 0x7FFF is not."""
        self.assertIsNone(error_code(self.client.channel_bind(0x6270, "8.8.8.8", 3)))
        self.assertEqual(error_code(self.client.channel_bind(0x7FFF, "8.8.8.8", 4)), 400)

    def test_channel_numbers(self) -> None:
        """Channel numbers below 0x4000 and conflicting bindings get 400."""
        self.assertEqual(error_code(self.client.channel_bind(0x3FFF, "8.8.8.8", 1)), 400)
        self.assertIsNone(error_code(self.client.channel_bind(0x4FFF, "8.8.8.8", 1)))
        self.assertIsNone(error_code(self.client.channel_bind(0x4FFF, "8.8.8.8", 1)))
        self.assertEqual(error_code(self.client.channel_bind(0x4FFF, "8.8.8.8", 2)), 400)
        self.assertEqual(error_code(self.client.channel_bind(0x4000, "8.8.8.8", 1)), 400)

    def test_channel_missing_attributes(self) -> None:
        """ChannelBind without CHANNEL-NUMBER or XOR-PEER-ADDRESS gets 400, CreatePermission without a peer too."""
        self.assertEqual(error_code(self.client.request(Method.CHANNEL_BIND, [])), 400)
        self.assertEqual(error_code(self.client.request(Method.CREATE_PERMISSION, [])), 400)

    def test_channel_expiry(self) -> None:
        """A channel binding lasts 600 s (its permission 300 s unless refreshed)."""
        self.client.refresh(3600, now=0)
        self.client.channel_bind(0x4000, "8.8.8.8", 7, now=0)
        self.engine.handle_timer(now=300)
        self.assertNotIn("8.8.8.8", self.allocation.permissions)
        self.assertIn(0x4000, self.allocation.channels)
        self.engine.handle_timer(now=600)
        self.assertEqual(self.allocation.channels, {})
        self.assertEqual(self.engine.fast_path.channels, {})
        self.assertEqual(self.engine.counters.channels_active, 0)
        self.client.fetch_nonce(601)
        self.assertIsNone(error_code(self.client.channel_bind(0x4001, "8.8.8.8", 7, now=601)))

    def test_bandwidth_limit(self) -> None:
        """Past max_bps the excess is dropped and counted, in both directions."""
        engine, opener = make_engine(max_bps=8000)
        client = Client(engine)
        client.allocate()
        client.channel_bind(0x4000, "8.8.8.8", 1)
        for _ in range(3):
            client.send_raw(struct.pack("!HH", 0x4000, 600) + b"x" * 600, now=0)
            engine.manager.allocations[client.five_tuple].handle_peer_datagram(b"y" * 600, ("8.8.8.8", 1), 0)
        self.assertEqual(len(opener.relays[0].sent), 1)
        self.assertEqual(len(client.received), 1)
        self.assertEqual(engine.counters.dropped["bandwidth"], 4)


PEERS = ["127.0.0.1", "127.0.0.2", "::ffff:127.0.0.1", "0.0.0.0", "::", "::1", "169.254.169.254",
         "::ffff:169.254.169.254", "224.0.0.1", "255.255.255.255", "240.0.0.1", "fe80::1", "ff02::1",
         "::ffff:10.0.0.1:"[:-1], "64:ff9b::a9fe:a9fe", "::ffff:224.0.0.1",
         # 6to4 and Teredo carrying loopback and the metadata address (IPv4 inside IPv6)
         "2002:7f00:1::", "2002:a9fe:a9fe::1", "2001:0:4136:e378:8000:ffff:80ff:fffe",
         "2001:0:4136:e378:8000:ffff:5601:5601"]


class PeerTableTests(SynchronousTestCase):
    """The special-purpose addresses, in both spellings, against every way of naming a peer."""

    def setUp(self) -> None:
        self.engine, self.opener = make_engine()
        self.client = Client(self.engine)
        self.client.allocate([(AttrType.ADDITIONAL_ADDRESS_FAMILY, bytes((2, 0, 0, 0)))])

    def denied(self) -> list[str]:
        return [p for p in PEERS if p != "::ffff:10.0.0.1"]

    def test_create_permission(self) -> None:
        """CreatePermission for each special address gets 403."""
        for peer in self.denied():
            self.assertEqual(error_code(self.client.create_permission(peer)), 403, peer)

    def test_channel_bind(self) -> None:
        """ChannelBind to each special address gets 403."""
        for i, peer in enumerate(self.denied()):
            self.assertEqual(error_code(self.client.channel_bind(0x4000 + i, peer, 9)), 403, peer)

    def test_send(self) -> None:
        """A Send indication to each special address is dropped and nothing is sent."""
        for peer in self.denied():
            self.client.send_indication(peer, 9, b"x")
        self.assertEqual([r.sent for r in self.opener.relays], [[], []])
        self.assertEqual(self.engine.counters.peers_denied, len(self.denied()))

    def test_inbound(self) -> None:
        """A datagram from a peer without a permission never reaches the client."""
        allocation = self.engine.manager.allocations[self.client.five_tuple]
        allocation.handle_peer_datagram(b"x", ("169.254.169.254", 80), 0)
        self.assertEqual(self.client.received, [])

    def test_loopback_allowed_when_configured(self) -> None:
        """With allow_loopback_peers, 127.0.0.1 may be a peer, also spelled ::ffff:127.0.0.1 on IPv4."""
        from webrtcstack.turn.policy import PeerPolicy
        engine, _ = make_engine(policy=PeerPolicy(allow_loopback=True))
        client = Client(engine)
        client.allocate()
        self.assertIsNone(error_code(client.create_permission("127.0.0.1")))
        self.assertIsNone(error_code(client.create_permission("::ffff:127.0.0.1")))
        self.assertEqual(error_code(client.create_permission("169.254.169.254")), 403)


#: The methods a TURN client sends, and the classes it could send them as.
_TURN_METHODS = (Method.ALLOCATE, Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND, Method.SEND,
                 Method.BINDING)


@st.composite
def _wrong_request(draw: Any) -> tuple[int, int, bytes, list[tuple[int, bytes]], bool, bool]:
    """A structurally valid STUN message (right header, cookie, lengths) with wrong parts inside.

    Attributes come from the codec's table (:data:`tests.stun.strategies.ATTRIBUTE_VALUES`):
    each is either a well-formed value of its type, encoded by the codec, or
    bytes of any length under a known type (a malformed value), or an unknown
    type.  The message is signed with the right credentials or not at all,
    so it gets past authentication to the method handlers.

    Returns (method, class, transaction id, attributes, signed, fingerprint).
    """
    tid = draw(st.binary(min_size=12, max_size=12))
    xor_key = struct.pack("!I", MAGIC_COOKIE) + tid
    typed = st.sampled_from(sorted(ATTRIBUTE_VALUES)).flatmap(
        lambda t: ATTRIBUTE_VALUES[t].map(lambda v, t=t: (int(t), encode_value(t, v, xor_key))))
    malformed = st.tuples(st.sampled_from(sorted(int(t) for t in ATTRIBUTE_VALUES)), st.binary(max_size=40))
    peer = (int(AttrType.XOR_PEER_ADDRESS), encode_value(AttrType.XOR_PEER_ADDRESS, ("8.8.8.8", 9), xor_key))
    right = {  # what a correct request of each method carries
        Method.ALLOCATE: [(int(AttrType.REQUESTED_TRANSPORT), bytes((17, 0, 0, 0)))],
        Method.REFRESH: [(int(AttrType.LIFETIME), struct.pack("!I", 600))],
        Method.CREATE_PERMISSION: [peer],
        Method.CHANNEL_BIND: [(int(AttrType.CHANNEL_NUMBER), struct.pack("!HH", 0x4001, 0)), peer],
        Method.SEND: [peer, (int(AttrType.DATA), b"payload")],
        Method.BINDING: [],
    }
    method = draw(st.sampled_from(_TURN_METHODS))
    # The right attributes, some dropped, then wrong ones added, the lot shuffled.
    attrs = [a for a in right[method] if draw(st.sampled_from([True, True, True, False]))]
    attrs += draw(st.lists(st.one_of(typed, malformed, unknown_attribute), max_size=4))
    attrs = draw(st.permutations(attrs))
    cls = MessageClass.INDICATION if method == Method.SEND else draw(
        st.sampled_from([MessageClass.REQUEST] * 6 + [MessageClass.INDICATION, MessageClass.SUCCESS]))
    return int(method), int(cls), tid, attrs, draw(st.booleans().map(lambda b: b or method != Method.SEND)), \
        draw(st.booleans())


class RobustnessTests(SynchronousTestCase):
    def test_wrong_parts_reach_the_handlers(self) -> None:
        """Structurally valid requests with wrong, missing, duplicated or unknown attributes, signed with the right key, never make the engine raise; every answer is a well-formed response to that transaction; and the examples reach each method's handler past authentication (successes and method errors, not only 401)."""
        outcomes: dict[str, set[str]] = {}

        @settings(derandomize=True, max_examples=400, deadline=None, database=None)
        @given(_wrong_request(), st.booleans())
        def run(request: tuple[int, int, bytes, list[tuple[int, bytes]], bool, bool], allocated: bool) -> None:
            method, cls, tid, attrs, signed, fingerprint = request
            engine, _ = make_engine()
            client = Client(engine)
            client.fetch_nonce()
            if allocated:
                client.allocate()
                client.create_permission("8.8.8.8")
                client.channel_bind(0x4001, "8.8.8.8", 9)
            reply = client.send_raw(client.build(method, attrs, sign=signed, transaction_id=tid, cls=cls,
                                                 fingerprint=fingerprint))
            if reply is None:
                return
            self.assertEqual(reply.transaction_id, tid)
            self.assertEqual(reply.method, method)
            self.assertIn(reply.msg_class, (MessageClass.SUCCESS, MessageClass.ERROR))
            code = error_code(reply)
            if reply.msg_class == MessageClass.ERROR:
                self.assertTrue(code is not None and 300 <= code <= 699, code)
            outcomes.setdefault(Method(method).name, set()).add("ok" if code is None else str(code))

        run()
        for name in ("ALLOCATE", "REFRESH", "CREATE_PERMISSION", "CHANNEL_BIND"):
            reached = outcomes.get(name, set()) - {"401"}
            self.assertIn("ok", reached, (name, outcomes))
            self.assertTrue(reached - {"ok"}, (name, outcomes))  # a method-level error too

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(st.integers(0, 200), st.binary(max_size=64))
    def test_truncated_requests(self, cut: int, tail: bytes) -> None:
        """A signed request cut anywhere or with junk appended never raises and never allocates twice."""
        engine, opener = make_engine()
        client = Client(engine)
        client.fetch_nonce()
        raw = client.build(Method.ALLOCATE, TRANSPORT_UDP, fingerprint=True)
        client.send_raw(raw[:cut] + tail)
        self.assertLessEqual(len(opener.relays), 1)


class SendFastPathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.opener = make_engine()
        self.client = Client(self.engine)
        self.client.allocate()
        self.client.create_permission("8.8.8.8")
        self.allocation = self.engine.manager.allocations[self.client.five_tuple]

    def send(self, host: str, data: bytes, extra: list | None = None, fingerprint: bool = False) -> bytes:
        tid = os.urandom(12)
        return msgs.encode(Method.SEND, MessageClass.INDICATION, tid,
                           [self.client.peer_attr(host, 53, tid), (AttrType.DATA, data)] + (extra or []),
                           fingerprint=fingerprint)

    def test_fingerprint(self) -> None:
        """A Send indication with a correct FINGERPRINT takes the fast path; a wrong one does not."""
        good = self.send("8.8.8.8", b"abc", fingerprint=True)
        self.assertTrue(self.allocation.handle_send_indication(good, 0))
        bad = good[:-1] + bytes([good[-1] ^ 1])
        self.assertFalse(self.allocation.handle_send_indication(bad, 0))
        self.assertEqual(len(self.opener.relays[0].sent), 1)

    def test_relays_permitted(self) -> None:
        """A Send indication to a permitted IPv4 peer is relayed by the fast path."""
        self.assertTrue(self.allocation.handle_send_indication(self.send("8.8.8.8", b"abc"), 0))
        self.assertTrue(self.allocation.handle_send_indication(self.send("8.8.8.8", b"de"), 0))
        self.assertEqual(self.opener.relays[0].sent, [(b"abc", ("8.8.8.8", 53)), (b"de", ("8.8.8.8", 53))])

    def test_declines_unusual(self) -> None:
        """Unpermitted peers, IPv6 peers, extra attributes and bad lengths go to the full path."""
        self.assertFalse(self.allocation.handle_send_indication(self.send("8.8.4.4", b"x"), 0))
        self.assertFalse(self.allocation.handle_send_indication(self.send("2a00::1", b"x"), 0))
        self.assertFalse(self.allocation.handle_send_indication(self.send("8.8.8.8", b"x", [(AttrType.SOFTWARE, b"s")]), 0))
        bad = bytearray(self.send("8.8.8.8", b"abcd"))
        bad[-6:-4] = struct.pack("!H", 200)
        self.assertFalse(self.allocation.handle_send_indication(bytes(bad), 0))
        self.assertFalse(self.allocation.handle_send_indication(self.send("8.8.8.8", b"abcd")[:-1], 0))
        self.assertEqual(self.opener.relays[0].sent, [])


class ReconfigureTests(SynchronousTestCase):
    def _settings(self, engine: Any, **changes: Any) -> TurnSettings:
        s = engine.settings
        values: dict[str, Any] = dict(realm=s.realm, relay_hosts={4: "10.9.9.9"}, advertised_hosts={4: "10.9.9.9"},
                                      relay_ports=(60000, 60010), nonce_lifetime_s=s.nonce_lifetime_s)
        values.update(changes)
        return TurnSettings(**values)

    def test_users_secrets_and_limits_apply(self) -> None:
        """A reload replaces users, secrets, policy and quotas for new requests; relay addresses and ports stay."""
        engine, _ = make_engine()
        relay_hosts, ports = dict(engine.settings.relay_hosts), engine.settings.relay_ports
        engine.reconfigure(self._settings(engine, user_quota=1), [("dave", "pw-d")], ["s3"], PeerPolicy())
        self.assertEqual((engine.settings.relay_hosts, engine.settings.relay_ports), (relay_hosts, ports))
        self.assertEqual(engine.credentials.secrets, ("s3",))
        self.assertEqual(error_code(Client(engine).allocate()), 401)
        dave = Client(engine, username="dave", password="pw-d")
        self.assertIsNone(error_code(dave.allocate()))
        again = Client(engine, client=("198.51.100.7", 40001), username="dave", password="pw-d")
        self.assertEqual(error_code(again.allocate()), 486)

    def test_realm_and_nonce_lifetime_apply(self) -> None:
        """A reload with a new realm and nonce lifetime challenges with the new realm and ages nonces by the new lifetime."""
        engine, _ = make_engine(nonce_lifetime_s=600)
        engine.reconfigure(self._settings(engine, realm="new.example", nonce_lifetime_s=30),
                           [("alice", "secret-a")], [], PeerPolicy())
        client = Client(engine)
        reply = client.send_raw(client.build(Method.ALLOCATE, TRANSPORT_UDP, sign=False), now=0.0)
        assert reply is not None
        self.assertEqual(reply.get(AttrType.REALM), b"new.example")
        self.assertEqual(engine.credentials.realm, "new.example")
        self.assertEqual(engine.authenticator.nonces.lifetime_s, 30)
        nonce = reply.get(AttrType.NONCE)
        self.assertTrue(engine.authenticator.nonces.check(nonce.decode(), client.five_tuple.client[0], 29.0))
        self.assertFalse(engine.authenticator.nonces.check(nonce.decode(), client.five_tuple.client[0], 31.0))

    def test_drain_survives_reload(self) -> None:
        """A reload while draining keeps refusing new allocations with 508."""
        engine, _ = make_engine()
        engine.draining = True
        engine.reconfigure(self._settings(engine), [("alice", "secret-a")], [], PeerPolicy())
        self.assertTrue(engine.draining)
        self.assertEqual(error_code(Client(engine).allocate()), 508)


class AuthFailureListenerTests(SynchronousTestCase):
    def test_reasons_reported(self) -> None:
        """Every authentication failure is reported to the listener with its reason, source host and time."""
        engine, _ = make_engine()
        seen: list[tuple[str, str, float]] = []
        engine.auth_failure_listener = lambda reason, host, now: seen.append((reason, host, now))
        Client(engine, password="wrong").allocate(now=5.0)
        self.assertEqual(seen, [("no_credentials", "198.51.100.7", 5.0), ("bad_integrity", "198.51.100.7", 5.0)])
        self.assertEqual(engine.counters.auth_failures, {"no_credentials": 1, "bad_integrity": 1})
