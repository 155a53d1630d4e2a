# -*- test-case-name: tests.stun.test_message -*-
"""Tests for webrtcstack.stun.message: the RFC 5769 vectors, decode/encode and the classifiers."""

from __future__ import annotations

import struct

from hypothesis import example, given
from hypothesis import strategies as st
from twisted.trial import unittest

from tests.stun.strategies import DETERMINISTIC, attribute_lists, message_classes, methods, transaction_ids
from tests.vectors import rfc5769
from webrtcstack.stun import (
    AttrType,
    Message,
    MessageClass,
    Method,
    StunDecodeError,
    decode,
    encode,
    is_channel_data,
    looks_like_stun,
)
from webrtcstack.stun.integrity import verify_fingerprint, verify_integrity
from webrtcstack.stun.message import message_type, split_message_type

SHORT_TERM = rfc5769.SHORT_TERM_PASSWORD.encode()


class RFC5769Tests(unittest.SynchronousTestCase):
    """The four sample messages of RFC 5769."""

    def test_sample_request_decodes(self) -> None:
        """§2.1 decodes to a Binding request with its six attributes in wire order."""
        message = decode(rfc5769.SAMPLE_REQUEST)
        self.assertEqual((message.method, message.msg_class), (Method.BINDING, MessageClass.REQUEST))
        self.assertEqual(message.transaction_id, rfc5769.TRANSACTION_ID)
        self.assertFalse(message.classic)
        self.assertEqual([t for t, _ in message.attributes], [
            AttrType.SOFTWARE, AttrType.PRIORITY, AttrType.ICE_CONTROLLED, AttrType.USERNAME,
            AttrType.MESSAGE_INTEGRITY, AttrType.FINGERPRINT])
        self.assertEqual(message.get(AttrType.SOFTWARE), "STUN test client")
        self.assertEqual(message.get(AttrType.PRIORITY), 0x6E0001FF)
        self.assertEqual(message.get(AttrType.ICE_CONTROLLED), 0x932FF9B151263B36)
        self.assertEqual(message.get(AttrType.USERNAME), "evtj:h6vY")

    def test_sample_request_verifies(self) -> None:
        """§2.1 passes MESSAGE-INTEGRITY with the short-term password and FINGERPRINT."""
        raw = rfc5769.SAMPLE_REQUEST
        self.assertTrue(verify_integrity(raw, decode(raw), SHORT_TERM))
        self.assertFalse(verify_integrity(raw, decode(raw), b"wrong"))
        self.assertTrue(verify_fingerprint(raw))

    def test_sample_responses_decode_and_verify(self) -> None:
        """§2.2 and §2.3 give their XOR-MAPPED-ADDRESS and pass integrity and fingerprint."""
        for raw, mapped in [(rfc5769.SAMPLE_IPV4_RESPONSE, rfc5769.SAMPLE_IPV4_MAPPED),
                            (rfc5769.SAMPLE_IPV6_RESPONSE, rfc5769.SAMPLE_IPV6_MAPPED)]:
            message = decode(raw)
            self.assertEqual(message.msg_class, MessageClass.SUCCESS)
            self.assertEqual(message.get(AttrType.SOFTWARE), "test vector")
            self.assertEqual(message.get(AttrType.XOR_MAPPED_ADDRESS), mapped)
            self.assertTrue(verify_integrity(raw, message, SHORT_TERM))
            self.assertTrue(verify_fingerprint(raw))

    def test_short_term_vectors_reencode_byte_for_byte(self) -> None:
        """Re-encoding §2.1-2.3 with the RFC's 0x20 padding reproduces every byte, MI and FINGERPRINT included."""
        for raw in (rfc5769.SAMPLE_REQUEST, rfc5769.SAMPLE_IPV4_RESPONSE, rfc5769.SAMPLE_IPV6_RESPONSE):
            self.assertEqual(encode(decode(raw), integrity_key=SHORT_TERM, pad_byte=0x20), raw)

    def test_short_term_vectors_with_zero_padding_differ_only_in_padding_and_checksums(self) -> None:
        """With the default zero padding only the pad bytes, MI and FINGERPRINT change, and it still verifies."""
        raw = rfc5769.SAMPLE_REQUEST
        ours = encode(decode(raw), integrity_key=SHORT_TERM)
        self.assertEqual(len(ours), len(raw))
        mi_value = range(len(raw) - 28, len(raw) - 8)
        fp_value = range(len(raw) - 4, len(raw))
        allowed = set(rfc5769.SAMPLE_REQUEST_PADDING) | set(mi_value) | set(fp_value)
        self.assertLessEqual({i for i in range(len(raw)) if raw[i] != ours[i]}, allowed)
        self.assertTrue(verify_integrity(ours, None, SHORT_TERM))
        self.assertTrue(verify_fingerprint(ours))

    def test_long_term_request_decodes(self) -> None:
        """§2.4 decodes to USERNAME, NONCE, REALM and MESSAGE-INTEGRITY, with no FINGERPRINT."""
        message = decode(rfc5769.LONG_TERM_REQUEST)
        self.assertEqual(message.transaction_id, rfc5769.LONG_TERM_TRANSACTION_ID)
        self.assertEqual(message.get(AttrType.USERNAME), rfc5769.LONG_TERM_USERNAME)
        self.assertEqual(message.get(AttrType.NONCE), rfc5769.LONG_TERM_NONCE)
        self.assertEqual(message.get(AttrType.REALM), rfc5769.LONG_TERM_REALM)
        self.assertNotIn(AttrType.FINGERPRINT, message)
        self.assertFalse(verify_fingerprint(rfc5769.LONG_TERM_REQUEST))

    def test_long_term_request_reencodes_byte_for_byte(self) -> None:
        """Encoding §2.4's three attributes with the long-term key reproduces the RFC's bytes."""
        from webrtcstack.stun.integrity import long_term_key

        key = long_term_key(rfc5769.LONG_TERM_USERNAME, rfc5769.LONG_TERM_REALM, rfc5769.LONG_TERM_PASSWORD)
        message = Message(Method.BINDING, MessageClass.REQUEST, rfc5769.LONG_TERM_TRANSACTION_ID, (
            (AttrType.USERNAME, rfc5769.LONG_TERM_USERNAME),
            (AttrType.NONCE, rfc5769.LONG_TERM_NONCE),
            (AttrType.REALM, rfc5769.LONG_TERM_REALM),
        ))
        self.assertEqual(encode(message, integrity_key=key, fingerprint=False), rfc5769.LONG_TERM_REQUEST)


def _header(msg_type: int, length: int, tid: bytes = b"\x21\x12\xa4\x42" + bytes(12)) -> bytes:
    return struct.pack("!HH", msg_type, length) + tid


class DecodeTests(unittest.SynchronousTestCase):
    """Malformed input and the RFC 8489 rules on what follows MESSAGE-INTEGRITY."""

    def assertDecodeError(self, data: bytes, text: str) -> None:
        error = self.assertRaises(StunDecodeError, decode, data)
        self.assertIn(text, str(error))

    def test_short_data(self) -> None:
        """Fewer than 20 bytes is not a message."""
        self.assertDecodeError(b"\x00\x01\x00\x00", "shorter than a STUN header")

    def test_first_bits(self) -> None:
        """A type with either of the top two bits set is not STUN."""
        self.assertDecodeError(_header(0x4001, 0), "first two bits")

    def test_length_not_multiple_of_four(self) -> None:
        """A length field that is not a multiple of 4 is refused."""
        self.assertDecodeError(_header(0x0001, 2) + b"\x00\x00", "multiple of 4")

    def test_length_mismatch(self) -> None:
        """A length field that does not match the datagram is refused, either way."""
        self.assertDecodeError(_header(0x0001, 4), "does not match")
        self.assertDecodeError(_header(0x0001, 0) + bytes(4), "does not match")

    def test_attribute_overrun(self) -> None:
        """An attribute whose length runs past the message end is refused."""
        self.assertDecodeError(_header(0x0001, 8) + struct.pack("!HH", 0x8022, 5) + b"abcd", "overruns")

    def test_attribute_header_at_end(self) -> None:
        """An attribute header with no room left for its value is refused."""
        data = _header(0x0001, 4) + struct.pack("!HH", 0x8022, 4)
        self.assertDecodeError(data, "overruns")

    def test_bad_typed_value(self) -> None:
        """A typed attribute of the wrong size (LIFETIME of 2 bytes) is refused."""
        data = _header(0x0003, 8) + struct.pack("!HH", AttrType.LIFETIME, 2) + b"\x00\x01\x00\x00"
        self.assertDecodeError(data, "must be 4 bytes")

    def test_bad_address_family(self) -> None:
        """An address attribute with family 3 is refused."""
        data = _header(0x0101, 12) + struct.pack("!HHBBH", AttrType.XOR_MAPPED_ADDRESS, 8, 0, 3, 1) + bytes(4)
        self.assertDecodeError(data, "address family")

    def test_invalid_utf8(self) -> None:
        """A USERNAME that is not UTF-8 is refused."""
        data = _header(0x0001, 8) + struct.pack("!HH", AttrType.USERNAME, 2) + b"\xff\xfe\x00\x00"
        self.assertDecodeError(data, "UTF-8")

    def test_not_bytes(self) -> None:
        """Anything but bytes raises StunDecodeError, not TypeError."""
        self.assertRaises(StunDecodeError, decode, "text")  # type: ignore[arg-type]

    def test_attributes_after_integrity_ignored(self) -> None:
        """Attributes after MESSAGE-INTEGRITY are dropped, except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT."""
        tid = bytes(range(12))
        signed = encode(Message(Method.ALLOCATE, MessageClass.REQUEST, tid, ((AttrType.LIFETIME, 600),)),
                        integrity_key=b"k", fingerprint=False)
        extra = struct.pack("!HH", AttrType.DATA, 4) + b"abcd"
        extra += struct.pack("!HH", AttrType.MESSAGE_INTEGRITY_SHA256, 32) + bytes(32)
        extra += struct.pack("!HH", AttrType.SOFTWARE, 4) + b"late"
        extra += struct.pack("!HH", AttrType.FINGERPRINT, 4) + bytes(4)
        extra += struct.pack("!HH", AttrType.USERNAME, 4) + b"last"
        data = bytearray(signed + extra)
        struct.pack_into("!H", data, 2, len(data) - 20)
        message = decode(bytes(data))
        self.assertEqual([t for t, _ in message.attributes], [
            AttrType.LIFETIME, AttrType.MESSAGE_INTEGRITY, AttrType.MESSAGE_INTEGRITY_SHA256, AttrType.FINGERPRINT])
        # The HMAC covers only what precedes it, so it still verifies.
        self.assertTrue(verify_integrity(bytes(data), message, b"k"))

    def test_malformed_attribute_after_integrity_is_not_parsed(self) -> None:
        """A garbage value after MESSAGE-INTEGRITY is ignored rather than refused."""
        signed = encode(Message(Method.BINDING, MessageClass.REQUEST, bytes(12)), integrity_key=b"k",
                        fingerprint=False)
        data = bytearray(signed + struct.pack("!HH", AttrType.LIFETIME, 1) + b"\x00\x00\x00\x00")
        struct.pack_into("!H", data, 2, len(data) - 20)
        self.assertEqual(len(decode(bytes(data)).attributes), 1)

    def test_unknown_attribute_kept_raw(self) -> None:
        """An attribute type we do not know survives as raw bytes, in order, with duplicates."""
        attributes = ((0x7F01, b"xyz"), (AttrType.SOFTWARE, "a"), (0x7F01, b"w"))
        message = Message(Method.BINDING, MessageClass.REQUEST, bytes(12), attributes)
        self.assertEqual(decode(encode(message, fingerprint=False)), message)
        self.assertEqual(decode(encode(message, fingerprint=False)).get_all(0x7F01), [b"xyz", b"w"])

    def test_classic_transaction_id(self) -> None:
        """Without the magic cookie the 16 bytes after the length are the transaction id."""
        tid = bytes(range(1, 17))
        message = decode(_header(0x0001, 0, tid))
        self.assertTrue(message.classic)
        self.assertEqual(message.transaction_id, tid)
        self.assertEqual(encode(message, fingerprint=False), _header(0x0001, 0, tid))

    def test_unknown_method_kept_as_int(self) -> None:
        """A method we do not know decodes to its number."""
        message = decode(encode(Message(0x0ABC, MessageClass.INDICATION, bytes(12))))
        self.assertEqual(message.method, 0x0ABC)


class MessageTypeTests(unittest.SynchronousTestCase):
    """The interleaved method and class bits (RFC 8489 §5)."""

    def test_known_types(self) -> None:
        """Binding request, Binding success, Allocate error and Send indication have the RFC's type values."""
        self.assertEqual(message_type(Method.BINDING, MessageClass.REQUEST), 0x0001)
        self.assertEqual(message_type(Method.BINDING, MessageClass.SUCCESS), 0x0101)
        self.assertEqual(message_type(Method.ALLOCATE, MessageClass.ERROR), 0x0113)
        self.assertEqual(message_type(Method.SEND, MessageClass.INDICATION), 0x0016)
        self.assertEqual(message_type(0xFFF, MessageClass.ERROR), 0x3FFF)

    @DETERMINISTIC
    @given(st.integers(0, 0xFFF), message_classes)
    def test_split_inverts_join(self, method: int, msg_class: MessageClass) -> None:
        """Splitting a joined type gives back the method and class."""
        self.assertEqual(split_message_type(message_type(method, msg_class)), (method, msg_class))


class ClassifierTests(unittest.SynchronousTestCase):
    """looks_like_stun and is_channel_data."""

    def test_examples(self) -> None:
        """0x00-0x3F is STUN, 0x40-0x7F ChannelData, the rest neither, and empty is neither."""
        self.assertTrue(looks_like_stun(b"\x00\x01"))
        self.assertTrue(looks_like_stun(b"\x3f"))
        self.assertFalse(looks_like_stun(b"\x40"))
        self.assertTrue(is_channel_data(b"\x40\x00"))
        self.assertTrue(is_channel_data(b"\x7f\xff"))
        self.assertFalse(is_channel_data(b"\x80"))
        self.assertFalse(looks_like_stun(b"") or is_channel_data(b""))

    @DETERMINISTIC
    @given(st.binary(max_size=4))
    def test_never_both(self, data: bytes) -> None:
        """No input is both STUN and ChannelData."""
        self.assertFalse(looks_like_stun(data) and is_channel_data(data))


class PropertyTests(unittest.SynchronousTestCase):
    """Hypothesis properties of the codec."""

    @DETERMINISTIC
    @given(methods, message_classes, transaction_ids, attribute_lists, st.booleans())
    def test_round_trip(self, method: int, msg_class: MessageClass, tid: bytes,
                        attributes: tuple[tuple[int, object], ...], fingerprint: bool) -> None:
        """decode(encode(m)) gives m back, plus the FINGERPRINT when one was added."""
        message = Message(method, msg_class, tid, attributes)
        raw = encode(message, fingerprint=fingerprint)
        decoded = decode(raw)
        if fingerprint:
            self.assertEqual(decoded.attributes[-1][0], AttrType.FINGERPRINT)
            self.assertTrue(verify_fingerprint(raw))
            decoded = Message(decoded.method, decoded.msg_class, decoded.transaction_id, decoded.attributes[:-1])
        self.assertEqual(decoded, message)

    @DETERMINISTIC
    @given(st.binary(max_size=120))
    @example(_header(0x0001, 4) + b"\x00\x01\x00")
    @example(_header(0x0101, 12) + struct.pack("!HHBBH", 0x20, 8, 0, 2, 0) + bytes(4))
    def test_any_bytes_only_stun_decode_error(self, data: bytes) -> None:
        """Arbitrary bytes either decode or raise StunDecodeError, never anything else."""
        try:
            decode(data)
        except StunDecodeError:
            pass

    @DETERMINISTIC
    @given(st.binary(max_size=100), st.integers(0, 0xFFFF))
    def test_any_body_behind_valid_header(self, body: bytes, msg_type: int) -> None:
        """A valid header followed by any attribute bytes decodes or raises only StunDecodeError."""
        body = body[: len(body) - len(body) % 4]
        data = _header(msg_type & 0x3FFF, len(body)) + body
        try:
            decode(data)
        except StunDecodeError:
            pass

    @DETERMINISTIC
    @given(methods, message_classes, transaction_ids, attribute_lists, st.integers(0, 200), st.integers(0, 7))
    def test_bit_flips_only_stun_decode_error(self, method: int, msg_class: MessageClass, tid: bytes,
                                              attributes: tuple[tuple[int, object], ...], index: int,
                                              bit: int) -> None:
        """Flipping one bit of a valid message never raises anything but StunDecodeError."""
        raw = bytearray(encode(Message(method, msg_class, tid, attributes)))
        raw[index % len(raw)] ^= 1 << bit
        try:
            decode(bytes(raw))
        except StunDecodeError:
            pass


class RawDecodeTests(unittest.SynchronousTestCase):
    """``decode(data, typed=False)``: the same checks, values left as the bytes on the wire."""

    def test_values_stay_bytes(self) -> None:
        """Every value is the exact bytes from the wire, XOR addresses still XORed, types still enums."""
        raw = encode(Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(12),
                             ((AttrType.LIFETIME, 600), (AttrType.XOR_PEER_ADDRESS, ("192.0.2.1", 9)),
                              (0x7F00, b"ab"))), fingerprint=False)
        message = decode(raw, typed=False)
        self.assertEqual(message.attributes, (
            (AttrType.LIFETIME, struct.pack("!I", 600)),
            (AttrType.XOR_PEER_ADDRESS, raw[32:40]),
            (0x7F00, b"ab"),
        ))
        self.assertIs(type(message.attributes[0][0]), AttrType)
        self.assertEqual(decode(raw).get(AttrType.XOR_PEER_ADDRESS), ("192.0.2.1", 9))

    def test_malformed_value_kept(self) -> None:
        """A value malformed for its type raises when typed, and is kept as bytes when not."""
        raw = encode(Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(12), ((AttrType.LIFETIME, b"\x00\x01"),)),
                     fingerprint=False)
        self.assertRaises(StunDecodeError, decode, raw)
        self.assertEqual(decode(raw, typed=False).get(AttrType.LIFETIME), b"\x00\x01")

    def test_lengths_still_checked(self) -> None:
        """An attribute that claims more bytes than the message has is refused either way."""
        raw = encode(Message(Method.SEND, MessageClass.INDICATION, bytes(12), ((AttrType.DATA, b"abcd"),)),
                     fingerprint=False)
        overrun = raw[:22] + b"\x00\x08" + raw[24:]
        self.assertRaises(StunDecodeError, decode, overrun, typed=False)

    def test_after_integrity_dropped(self) -> None:
        """Attributes after MESSAGE-INTEGRITY are dropped the same way (RFC 8489 §14.5)."""
        raw = encode(Message(Method.REFRESH, MessageClass.REQUEST, bytes(12), ()), integrity_key=b"k",
                     fingerprint=False)
        body = raw[20:] + struct.pack("!HHI", AttrType.LIFETIME, 4, 0)
        tampered = raw[:2] + struct.pack("!H", len(body)) + raw[4:20] + body
        message = decode(tampered, typed=False)
        self.assertNotIn(AttrType.LIFETIME, message)
        self.assertIn(AttrType.MESSAGE_INTEGRITY, message)
