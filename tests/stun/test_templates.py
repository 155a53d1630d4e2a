"""The codec's hot-path encoders and scanner hold to the general codec, byte for byte (issue 13).

Every STUN message the server sends is built by ``webrtcstack.stun.message``;
the precomputed forms there (a TURN response, a Binding answer, a Data
indication, the Send-indication scanner) must agree with ``encode`` and
``decode`` exactly, or a symmetric bug could hide in one of them.
"""

from __future__ import annotations

import hashlib
import struct

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.stun.strategies import DETERMINISTIC, addresses
from webrtcstack.stun import message as message_module
from webrtcstack.stun.attributes import encode_value
from webrtcstack.stun.constants import MAGIC_COOKIE, AttrType, Method, MessageClass
from webrtcstack.stun.message import (
    Message,
    attribute_tlv,
    binding_success,
    data_indication,
    decode,
    encode,
    encode_response,
    packed_xor_address,
    scan_send_indication,
    xor_peer_address_tlv,
)


class EncodeResponseTests(SynchronousTestCase):
    """encode_response and packed_xor_address: the TURN request path's encoders."""

    def test_packed_xor_address(self) -> None:
        """packed_xor_address writes the codec's XOR-address bytes for IPv4, IPv6 and scoped hosts, cached or not."""
        for tid in (bytes(12), bytes(range(12)), b"\xff" * 12):
            xor_key = MAGIC_COOKIE.to_bytes(4, "big") + tid
            for address in (("203.0.113.5", 50000), ("127.0.0.1", 0), ("2001:db8::7", 65535),
                            ("::ffff:192.0.2.1", 3478), ("fe80::1%lo", 1)):
                expected = encode_value(AttrType.XOR_MAPPED_ADDRESS, address, xor_key)
                self.assertEqual(packed_xor_address(address, xor_key), expected, address)
                self.assertEqual(packed_xor_address(address, xor_key), expected, address)  # from the table
        with self.assertRaises(ValueError):
            packed_xor_address(("not-an-ip", 1), bytes(16))

    def test_packed_xor_address_table_bounded(self) -> None:
        """The host table is emptied when full, so a flood of client addresses cannot grow it."""
        self.patch(message_module, "_HOST_HEADS", {})
        self.patch(message_module, "_HOST_HEADS_MAX", 4)
        for i in range(10):
            packed_xor_address((f"192.0.2.{i}", 1), bytes(16))
            self.assertLessEqual(len(message_module._HOST_HEADS), 4)

    def test_same_bytes_as_the_codec(self) -> None:
        """The request-path response encoder writes what the STUN codec's encode writes, for every signing choice."""
        tid = bytes(range(12))
        key = hashlib.md5(b"k").digest()
        attrs = [(AttrType.XOR_RELAYED_ADDRESS, ("203.0.113.5", 50000)), (AttrType.LIFETIME, 600),
                 (AttrType.XOR_MAPPED_ADDRESS, ("2001:db8::7", 40000)), (AttrType.SOFTWARE, b"odd-length"),
                 (AttrType.ERROR_CODE, (438, "")), (AttrType.NONCE, b"n" * 45)]
        for method, cls in ((Method.ALLOCATE, MessageClass.SUCCESS), (Method.REFRESH, MessageClass.ERROR)):
            for sha256 in (False, True):
                for fingerprint in (False, True):
                    for signed in (False, True):
                        expected = encode(Message(method, cls, tid, tuple(attrs)),
                                          integrity_key=key if signed and not sha256 else None,
                                          integrity_sha256_key=key if signed and sha256 else None,
                                          fingerprint=fingerprint)
                        got = encode_response(method, cls, tid, attrs, key if signed else None, sha256, fingerprint)
                        self.assertEqual(got, expected, (method, cls, sha256, fingerprint, signed))


#: RFC 5389/8489 transaction ids (the hot paths never answer RFC 3489 TURN).
tids = st.binary(min_size=12, max_size=12)


class BindingSuccessTests(SynchronousTestCase):
    @DETERMINISTIC
    @given(tids, addresses, st.sampled_from(["", "webrtcstack", "odd"]))
    def test_same_bytes_as_encode(self, tid: bytes, mapped: tuple[str, int], software: str) -> None:
        """binding_success equals encode() of XOR-MAPPED-ADDRESS, SOFTWARE and FINGERPRINT."""
        request = Message(Method.BINDING, MessageClass.REQUEST, tid, ())
        attrs: list[tuple[int, object]] = [(AttrType.XOR_MAPPED_ADDRESS, mapped)]
        if software:
            attrs.append((AttrType.SOFTWARE, software))
        expected = encode(Message(Method.BINDING, MessageClass.SUCCESS, tid, tuple(attrs)))
        software_tlv = attribute_tlv(AttrType.SOFTWARE, software.encode()) if software else b""
        self.assertEqual(binding_success(request, mapped, software_tlv), expected)

    def test_rfc3489_client(self) -> None:
        """A request without the cookie gets MAPPED-ADDRESS and its 16-byte id back, as encode() writes it."""
        tid = bytes(range(16))
        request = Message(Method.BINDING, MessageClass.REQUEST, tid, ())
        expected = encode(Message(Method.BINDING, MessageClass.SUCCESS, tid,
                                  ((AttrType.MAPPED_ADDRESS, ("192.0.2.1", 7)),)))
        self.assertEqual(binding_success(request, ("192.0.2.1", 7)), expected)


class DataIndicationTests(SynchronousTestCase):
    @DETERMINISTIC
    @given(tids, addresses, st.binary(max_size=70))
    def test_same_bytes_as_encode(self, tid: bytes, peer: tuple[str, int], data: bytes) -> None:
        """data_indication equals encode() of XOR-PEER-ADDRESS and DATA with no FINGERPRINT."""
        expected = encode(Message(Method.DATA, MessageClass.INDICATION, tid,
                                  ((AttrType.XOR_PEER_ADDRESS, peer), (AttrType.DATA, data))), fingerprint=False)
        self.assertEqual(data_indication(xor_peer_address_tlv(peer, tid), tid, data), expected)


def _send(tid: bytes, attrs: list[tuple[int, object]], fingerprint: bool) -> bytes:
    return encode(Message(Method.SEND, MessageClass.INDICATION, tid, tuple(attrs)), fingerprint=fingerprint)


class ScanSendIndicationTests(SynchronousTestCase):
    @DETERMINISTIC
    @given(tids, addresses, st.binary(max_size=70), st.booleans(), st.booleans())
    def test_agrees_with_decode(self, tid: bytes, peer: tuple[str, int], data: bytes, df: bool,
                                fingerprint: bool) -> None:
        """On a plain Send indication the scanner returns the raw values decode() finds."""
        attrs: list[tuple[int, object]] = [(AttrType.XOR_PEER_ADDRESS, peer), (AttrType.DATA, data)]
        if df:
            attrs.insert(1, (AttrType.DONT_FRAGMENT, b""))
        raw = _send(tid, attrs, fingerprint)
        message = decode(raw, typed=False)
        self.assertEqual(scan_send_indication(raw),
                         (message.get(AttrType.XOR_PEER_ADDRESS), message.get(AttrType.DATA)))

    def test_written_out_bytes(self) -> None:
        """A Send indication written out by hand (peer 192.0.2.1:32853, DATA "abc") scans to its values."""
        tid = b"\x01" * 12
        peer_value = bytes([0, 1, 0x80 ^ 0x21, 0x55 ^ 0x12]) + bytes(a ^ b for a, b in zip((192, 0, 2, 1), b"\x21\x12\xa4\x42"))
        raw = (b"\x00\x16\x00\x14" + b"\x21\x12\xa4\x42" + tid
               + b"\x00\x12\x00\x08" + peer_value + b"\x00\x13\x00\x03abc\x00")
        self.assertEqual(scan_send_indication(raw), (peer_value, b"abc"))
        self.assertEqual(decode(raw).get(AttrType.XOR_PEER_ADDRESS), ("192.0.2.1", 32853))

    def test_declines_what_is_not_plain(self) -> None:
        """Anything besides the plain case is None, so the full decoder has the last word."""
        tid = bytes(12)
        good = _send(tid, [(AttrType.XOR_PEER_ADDRESS, ("192.0.2.1", 5)), (AttrType.DATA, b"x")], True)
        self.assertIsNotNone(scan_send_indication(good))
        wrong_crc = bytearray(good)
        wrong_crc[-1] ^= 1
        for raw in (
            bytes(wrong_crc),                                     # FINGERPRINT does not match
            good[:-1],                                            # truncated
            good + b"\0\0\0\0",                                   # bytes past the length
            _send(tid, [(AttrType.DATA, b"x")], False),           # no peer
            _send(tid, [(AttrType.XOR_PEER_ADDRESS, ("192.0.2.1", 5))], False),  # no data
            _send(tid, [(AttrType.XOR_PEER_ADDRESS, ("192.0.2.1", 5)), (AttrType.DATA, b"x"),
                        (AttrType.SOFTWARE, "s")], False),         # another attribute
            encode(Message(Method.DATA, MessageClass.INDICATION, tid,
                           ((AttrType.XOR_PEER_ADDRESS, ("192.0.2.1", 5)), (AttrType.DATA, b"x")))),  # not Send
        ):
            self.assertIsNone(scan_send_indication(raw), raw)
        # A length running past the datagram.
        bad = bytearray(good)
        struct.pack_into("!H", bad, 22, 200)
        self.assertIsNone(scan_send_indication(bytes(bad)))
