"""Tests for :mod:`webrtcstack.turn.policy` (the engine-level table test is in test_engine)."""

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.turn.policy import PeerPolicy, normalise_address

DENIED_BY_DEFAULT = [
    "127.0.0.1", "127.0.0.2", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1",
    "0.0.0.0", "::", "::1", "[::1]", "169.254.169.254", "[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe",
    "64:ff9b::a9fe:a9fe", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
    "fe80::1", "ff02::1", "::ffff:0.0.0.0", "::ffff:224.0.0.1", "fe80::1%eth0",
]

ALLOWED_BY_DEFAULT = ["8.8.8.8", "10.1.2.3", "192.168.1.1", "100.64.0.1", "fd00::1", "2a00:1450::1",
                      "::ffff:8.8.8.8", "64:ff9b::808:808"]


class NormaliseTests(SynchronousTestCase):
    def test_mapped(self) -> None:
        """IPv4-mapped, -compatible and NAT64 spellings become the IPv4 address they carry."""
        for text in ("::ffff:1.2.3.4", "::1.2.3.4", "64:ff9b::102:304", "[::ffff:1.2.3.4]", "::ffff:0:1.2.3.4"):
            self.assertEqual(normalise_address(text), ipaddress.ip_address("1.2.3.4"), text)

    def test_special_v6_kept(self) -> None:
        """``::`` and ``::1`` are not unwrapped as IPv4-compatible addresses."""
        self.assertEqual(normalise_address("::1"), ipaddress.ip_address("::1"))
        self.assertEqual(normalise_address("::"), ipaddress.ip_address("::"))

    def test_not_an_address(self) -> None:
        """A name is not an address."""
        self.assertRaises(ValueError, normalise_address, "example.org")


class PeerPolicyTests(SynchronousTestCase):
    def test_default_denies(self) -> None:
        """Every special-purpose address is denied in every spelling by default."""
        policy = PeerPolicy()
        for text in DENIED_BY_DEFAULT:
            self.assertIsNone(policy.check(text), text)

    def test_default_allows(self) -> None:
        """Public and private unicast addresses are allowed by default."""
        policy = PeerPolicy()
        for text in ALLOWED_BY_DEFAULT:
            self.assertIsNotNone(policy.check(text), text)

    def test_loopback_opt_in(self) -> None:
        """allow_loopback_peers allows 127/8 and ::1 (in any spelling) but nothing else special."""
        policy = PeerPolicy(allow_loopback=True)
        for text in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"):
            self.assertIsNotNone(policy.check(text), text)
        self.assertIsNone(policy.check("169.254.169.254"))

    def test_denied_and_allowed_lists(self) -> None:
        """denied_peers adds ranges and allowed_peers wins over every deny."""
        policy = PeerPolicy(denied=[ipaddress.ip_network("10.0.0.0/8")],
                            allowed=[ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("169.254.1.0/24")])
        self.assertIsNone(policy.check("10.2.0.1"))
        self.assertIsNone(policy.check("::ffff:10.2.0.1"))
        self.assertIsNotNone(policy.check("10.1.0.1"))
        self.assertIsNotNone(policy.check("169.254.1.1"))
        self.assertIsNone(policy.check("169.254.169.254"))

    def test_6to4_and_teredo_are_judged_by_the_ipv4_inside(self) -> None:
        """6to4 (2002::/16) and Teredo (2001::/32) addresses of loopback, link-local, metadata or private IPv4
        addresses are refused as those addresses are; public ones pass and stay the IPv6 peer they are."""
        policy = PeerPolicy(denied=[ipaddress.ip_network("10.0.0.0/8")])

        def sixtofour(v4: str) -> str:
            return str(ipaddress.IPv6Address((0x2002 << 112) | (int(ipaddress.IPv4Address(v4)) << 80) | 1))

        def teredo(client: str, server: str = "65.54.227.120") -> str:
            inverted = int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
            return str(ipaddress.IPv6Address((0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64)
                                             | (0x8000 << 48) | (0xFFFF << 32) | inverted))

        self.assertEqual(sixtofour("127.0.0.1"), "2002:7f00:1::1")
        for v4 in ("127.0.0.1", "169.254.169.254", "169.254.1.1", "10.1.2.3", "0.0.0.0", "224.0.0.1"):
            self.assertIsNone(policy.check(sixtofour(v4)), v4)
            self.assertIsNone(policy.check(teredo(v4)), v4)
        self.assertIsNone(policy.check(teredo("8.8.8.8", server="127.0.0.1")))
        for v4 in ("8.8.8.8", "1.1.1.1"):
            self.assertEqual(str(policy.check(sixtofour(v4))), sixtofour(v4))
            self.assertEqual(str(policy.check(teredo(v4))), teredo(v4))
        listed = PeerPolicy(allowed=[ipaddress.ip_network("2002:7f00:1::/48")])
        self.assertIsNotNone(listed.check(sixtofour("127.0.0.1")))
        opted_in = PeerPolicy(allow_loopback=True)
        self.assertIsNotNone(opted_in.check(sixtofour("127.0.0.1")))

    def test_garbage(self) -> None:
        """Something that is not an IP address is denied."""
        self.assertIsNone(PeerPolicy().check("not-an-ip"))
