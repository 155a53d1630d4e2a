# -*- test-case-name: tests.stun.test_attributes -*-
"""Tests for webrtcstack.stun.attributes: typed values and their wire form."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from tests.stun.strategies import ATTRIBUTE_VALUES, DETERMINISTIC
from tests.vectors import rfc5769
from webrtcstack.stun import AttrType, StunDecodeError
from webrtcstack.stun.attributes import decode_value, encode_value, normalize_host, pack_address
from webrtcstack.stun.constants import MAGIC_COOKIE_BYTES

XOR_KEY = MAGIC_COOKIE_BYTES + rfc5769.TRANSACTION_ID


class AttributeTests(unittest.SynchronousTestCase):
    """One attribute value at a time."""

    def test_xor_mapped_address_matches_rfc5769(self) -> None:
        """XOR-MAPPED-ADDRESS of 192.0.2.1:32853 and the IPv6 sample encode as in RFC 5769 §2.2 and §2.3."""
        self.assertEqual(encode_value(AttrType.XOR_MAPPED_ADDRESS, rfc5769.SAMPLE_IPV4_MAPPED, XOR_KEY),
                         bytes.fromhex("0001a147e112a643"))
        self.assertEqual(encode_value(AttrType.XOR_MAPPED_ADDRESS, rfc5769.SAMPLE_IPV6_MAPPED, XOR_KEY),
                         bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9"))

    def test_plain_mapped_address(self) -> None:
        """MAPPED-ADDRESS is not XORed."""
        self.assertEqual(encode_value(AttrType.MAPPED_ADDRESS, ("10.0.0.1", 80), XOR_KEY),
                         bytes.fromhex("000100500a000001"))

    def test_error_code_wire_form(self) -> None:
        """ERROR-CODE 420 is class 4, number 20, then the reason."""
        self.assertEqual(encode_value(AttrType.ERROR_CODE, (420, "x"), XOR_KEY), b"\x00\x00\x04\x14x")
        self.assertEqual(decode_value(AttrType.ERROR_CODE, b"\x00\x00\x05\x08", XOR_KEY), (508, ""))
        self.assertRaises(ValueError, encode_value, AttrType.ERROR_CODE, (200, ""), XOR_KEY)

    def test_small_numbers_have_rffu_bytes(self) -> None:
        """REQUESTED-TRANSPORT and CHANNEL-NUMBER are padded to 4 bytes with zeros."""
        self.assertEqual(encode_value(AttrType.REQUESTED_TRANSPORT, 17, XOR_KEY), b"\x11\x00\x00\x00")
        self.assertEqual(encode_value(AttrType.CHANNEL_NUMBER, 0x4001, XOR_KEY), b"\x40\x01\x00\x00")

    def test_flags_and_even_port(self) -> None:
        """DONT-FRAGMENT is empty; EVEN-PORT is one byte with the R bit on top."""
        self.assertEqual(encode_value(AttrType.DONT_FRAGMENT, True, XOR_KEY), b"")
        self.assertEqual(encode_value(AttrType.EVEN_PORT, True, XOR_KEY), b"\x80")
        self.assertIs(decode_value(AttrType.EVEN_PORT, b"\x00", XOR_KEY), False)

    def test_bytes_written_unchanged(self) -> None:
        """A bytes value is written as-is whatever the type."""
        self.assertEqual(encode_value(AttrType.LIFETIME, b"\x00\x00\x02\x58", XOR_KEY), b"\x00\x00\x02\x58")

    def test_wrong_value_type(self) -> None:
        """An unknown type with a non-bytes value cannot be encoded."""
        self.assertRaises(TypeError, encode_value, 0x7F00, 5, XOR_KEY)

    def test_malformed_values(self) -> None:
        """Short or odd-sized values raise StunDecodeError."""
        for attr_type, value in [
            (AttrType.ERROR_CODE, b"\x00\x00"),
            (AttrType.UNKNOWN_ATTRIBUTES, b"\x00"),
            (AttrType.XOR_MAPPED_ADDRESS, b"\x00\x01\x00"),
            (AttrType.XOR_MAPPED_ADDRESS, b"\x00\x01\x00\x00\x01\x02\x03"),
            (AttrType.MAPPED_ADDRESS, b"\x00\x02\x00\x00" + bytes(4)),
            (AttrType.MESSAGE_INTEGRITY, bytes(19)),
            (AttrType.MESSAGE_INTEGRITY_SHA256, bytes(12)),
            (AttrType.PASSWORD_ALGORITHMS, b"\x00\x01\x00\x08\x00"),
            (AttrType.PASSWORD_ALGORITHMS, b"\x00\x01"),
            (AttrType.PASSWORD_ALGORITHM, b""),
            (AttrType.EVEN_PORT, b""),
            (AttrType.ADDRESS_ERROR_CODE, b"\x01"),
        ]:
            self.assertRaises(StunDecodeError, decode_value, attr_type, value, XOR_KEY)

    def test_normalize_host(self) -> None:
        """Zones are dropped and v4-mapped IPv6 becomes IPv4; IPv4 and plain IPv6 are untouched."""
        self.assertEqual(normalize_host("fe80::1%eth0"), "fe80::1")
        self.assertEqual(normalize_host("::ffff:192.0.2.7"), "192.0.2.7")
        self.assertEqual(normalize_host("2001:db8::1"), "2001:db8::1")
        self.assertEqual(normalize_host("192.0.2.7"), "192.0.2.7")

    def test_pack_bad_host(self) -> None:
        """A host that is not an IP address is a ValueError, at encode time."""
        self.assertRaises(ValueError, pack_address, ("example.org", 1), None)

    @DETERMINISTIC
    @given(st.sampled_from(sorted(ATTRIBUTE_VALUES)).flatmap(
        lambda t: st.tuples(st.just(t), ATTRIBUTE_VALUES[t])))
    def test_round_trip(self, pair: tuple[int, object]) -> None:
        """Every typed value decodes back to itself."""
        attr_type, value = pair
        self.assertEqual(decode_value(attr_type, encode_value(attr_type, value, XOR_KEY), XOR_KEY), value)
