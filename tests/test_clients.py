"""Who the client is behind trusted proxies, and how the anonymised access log writes it (sans-IO)."""

from __future__ import annotations

from twisted.trial import unittest

from webrtcstack.clients import anonymise_path, client_behind_proxies, is_trusted, truncate_address
from webrtcstack.config import parse_networks

TRUSTED = parse_networks("127.0.0.1 10.0.0.0/8 ::1")


class ForwardedTests(unittest.TestCase):
    def test_untrusted_peer_headers_are_ignored(self) -> None:
        found = client_behind_proxies("192.0.2.1", TRUSTED, x_forwarded_for=["203.0.113.9"], x_forwarded_proto=["https"])
        self.assertEqual((found.ip, found.proto), ("192.0.2.1", None))

    def test_chain_is_read_from_the_right_past_trusted_proxies(self) -> None:
        """A client can put anything at the left of X-Forwarded-For; only the first untrusted hop from the right counts."""
        found = client_behind_proxies("127.0.0.1", TRUSTED, x_forwarded_for=["6.6.6.6, 203.0.113.9", "10.1.2.3"])
        self.assertEqual(found.ip, "203.0.113.9")
        only_proxies = client_behind_proxies("127.0.0.1", TRUSTED, x_forwarded_for=["10.9.9.9, 10.1.1.1"])
        self.assertEqual(only_proxies.ip, "10.9.9.9")

    def test_garbage_stops_at_the_last_readable_hop(self) -> None:
        found = client_behind_proxies("127.0.0.1", TRUSTED, x_forwarded_for=["203.0.113.9, unknown, 10.0.0.2"])
        self.assertEqual(found.ip, "10.0.0.2")
        self.assertEqual(client_behind_proxies("127.0.0.1", TRUSTED, x_forwarded_for=["nonsense"]).ip, "127.0.0.1")

    def test_forwarded_wins_and_carries_proto(self) -> None:
        found = client_behind_proxies("::1", TRUSTED, forwarded=['for=192.0.2.60;proto=https;by=203.0.113.43'],
                                      x_forwarded_for=["198.51.100.1"])
        self.assertEqual((found.ip, found.proto), ("192.0.2.60", "https"))
        mapped = client_behind_proxies("127.0.0.1", TRUSTED, forwarded=['for="[::ffff:192.0.2.7]:99"'])
        self.assertEqual(mapped.ip, "192.0.2.7")
        broken = client_behind_proxies("127.0.0.1", TRUSTED, forwarded=['for=192.0.2.60;;=x'])
        self.assertEqual(broken.ip, "127.0.0.1")

    def test_x_forwarded_proto_first_value_and_only_http_or_https(self) -> None:
        found = client_behind_proxies("127.0.0.1", TRUSTED, x_forwarded_for=["203.0.113.9"],
                                      x_forwarded_proto=["https, http"])
        self.assertEqual(found.proto, "https")
        odd = client_behind_proxies("127.0.0.1", TRUSTED, x_forwarded_proto=["gopher"])
        self.assertIsNone(odd.proto)

    def test_is_trusted(self) -> None:
        self.assertTrue(is_trusted("10.200.0.1", TRUSTED))
        self.assertFalse(is_trusted("11.0.0.1", TRUSTED))
        self.assertFalse(is_trusted("not an address", TRUSTED))


class AnonymiseTests(unittest.TestCase):
    def test_addresses_are_cut(self) -> None:
        self.assertEqual(truncate_address("203.0.113.77"), "203.0.113.0")
        self.assertEqual(truncate_address("2001:db8:1:2:3::5"), "2001:db8:1::")
        self.assertEqual(truncate_address("?"), "-")

    def test_client_ids_and_queries_are_dropped_room_names_stay(self) -> None:
        self.assertEqual(anonymise_path("/message/room1/123?x=1"), "/message/room1/-")
        self.assertEqual(anonymise_path("/leave/room1/123"), "/leave/room1/-")
        self.assertEqual(anonymise_path("/collider/room1/123"), "/collider/room1/-")
        self.assertEqual(anonymise_path("/r/room1?debug=loopback"), "/r/room1")
        self.assertEqual(anonymise_path("/room1/123", collider_site=True), "/room1/-")
        self.assertEqual(anonymise_path("/room1/123"), "/room1/123")
