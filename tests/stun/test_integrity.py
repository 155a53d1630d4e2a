# -*- test-case-name: tests.stun.test_integrity -*-
"""Tests for webrtcstack.stun.integrity: MESSAGE-INTEGRITY(-SHA256), FINGERPRINT, keys."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from tests.stun.strategies import DETERMINISTIC
from tests.vectors import rfc5769
from webrtcstack.stun import AttrType, Message, MessageClass, Method, decode, encode
from webrtcstack.stun.integrity import (
    long_term_key,
    long_term_key_sha256,
    opaque_string,
    saslprep,
    verify_fingerprint,
    verify_integrity,
    verify_integrity_sha256,
)

REQUEST = Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(range(12)), (
    (AttrType.USERNAME, "alice"), (AttrType.REQUESTED_TRANSPORT, 17)))


class LongTermKeyTests(unittest.SynchronousTestCase):
    """Key derivation (RFC 8489 §9.2.2)."""

    def test_rfc5769_long_term_vector(self) -> None:
        """The MD5 key from the RFC 5769 §2.4 credentials verifies the §2.4 request."""
        key = long_term_key(rfc5769.LONG_TERM_USERNAME, rfc5769.LONG_TERM_REALM, rfc5769.LONG_TERM_PASSWORD)
        raw = rfc5769.LONG_TERM_REQUEST
        self.assertTrue(verify_integrity(raw, decode(raw), key))
        wrong = long_term_key(rfc5769.LONG_TERM_USERNAME, rfc5769.LONG_TERM_REALM, "thematrix")
        self.assertFalse(verify_integrity(raw, decode(raw), wrong))

    def test_saslprep_of_rfc5769_password(self) -> None:
        """SASLprep turns the RFC's unprepared password into "TheMatrIX"."""
        self.assertEqual(saslprep(rfc5769.LONG_TERM_PASSWORD_UNPREPARED), rfc5769.LONG_TERM_PASSWORD)

    def test_saslprep_rules(self) -> None:
        """SASLprep maps non-ASCII spaces, drops soft hyphens and refuses control characters."""
        self.assertEqual(saslprep("a\u00a0b\u00adc"), "a bc")
        self.assertRaises(ValueError, saslprep, "a\u0007")

    def test_opaque_string(self) -> None:
        """Credential preparation keeps ASCII as is, maps spaces and gives the RFC 8489 B.1 result."""
        self.assertEqual(opaque_string("TheMatrIX"), "TheMatrIX")
        self.assertEqual(opaque_string("a\u3000b"), "a b")
        self.assertEqual(opaque_string("The\u00adM\u00aatr\u2168"), "TheMatrIX")
        self.assertEqual(opaque_string(rfc5769.LONG_TERM_PASSWORD_UNPREPARED), rfc5769.LONG_TERM_PASSWORD)

    def test_sha256_key(self) -> None:
        """The SHA-256 key is SHA-256 of the same "user:realm:password" string."""
        self.assertEqual(long_term_key_sha256("u", "r", "p"), hashlib.sha256(b"u:r:p").digest())
        self.assertEqual(long_term_key("u", "r", "p"), hashlib.md5(b"u:r:p").digest())


class VerifyTests(unittest.SynchronousTestCase):
    """Verification over the raw bytes."""

    def test_integrity_and_sha256_together(self) -> None:
        """A message with MI, MI-SHA256 and FINGERPRINT verifies each with its own key."""
        raw = encode(REQUEST, integrity_key=b"k1", integrity_sha256_key=b"k2")
        message = decode(raw)
        self.assertEqual([t for t, _ in message.attributes][-3:], [
            AttrType.MESSAGE_INTEGRITY, AttrType.MESSAGE_INTEGRITY_SHA256, AttrType.FINGERPRINT])
        self.assertTrue(verify_integrity(raw, message, b"k1"))
        self.assertTrue(verify_integrity_sha256(raw, message, b"k2"))
        self.assertFalse(verify_integrity_sha256(raw, message, b"k1"))
        self.assertTrue(verify_fingerprint(raw))

    def test_missing_attributes(self) -> None:
        """Without MI, MI-SHA256 or FINGERPRINT every check is false."""
        raw = encode(REQUEST, fingerprint=False)
        self.assertFalse(verify_integrity(raw, decode(raw), b"k"))
        self.assertFalse(verify_integrity(raw, None, b"k"))
        self.assertFalse(verify_integrity_sha256(raw, decode(raw), b"k"))
        self.assertFalse(verify_fingerprint(raw))
        self.assertFalse(verify_fingerprint(b"short"))

    def test_truncated_sha256(self) -> None:
        """A MESSAGE-INTEGRITY-SHA256 truncated to 16 bytes still verifies (RFC 8489 §14.6)."""
        import hmac
        import struct

        body = encode(REQUEST, fingerprint=False)
        header = body[:2] + struct.pack("!H", len(body) - 20 + 20) + body[4:20]
        mac = hmac.new(b"k", header + body[20:], hashlib.sha256).digest()[:16]
        raw = header + body[20:] + struct.pack("!HH", AttrType.MESSAGE_INTEGRITY_SHA256, 16) + mac
        self.assertTrue(verify_integrity_sha256(raw, decode(raw), b"k"))

    def test_fingerprint_must_be_last(self) -> None:
        """A FINGERPRINT followed by anything does not verify."""
        import struct

        raw = bytearray(encode(REQUEST) + struct.pack("!HH", AttrType.SOFTWARE, 0))
        struct.pack_into("!H", raw, 2, len(raw) - 20)
        self.assertFalse(verify_fingerprint(bytes(raw)))

    @DETERMINISTIC
    @given(st.binary(min_size=1, max_size=20), st.integers(0, 200), st.integers(0, 7))
    def test_any_flip_breaks_integrity(self, key: bytes, index: int, bit: int) -> None:
        """Flipping any bit of a signed message makes MI or FINGERPRINT fail (or it no longer decodes)."""
        raw = bytearray(encode(REQUEST, integrity_key=key))
        raw[index % len(raw)] ^= 1 << bit
        flipped = bytes(raw)
        self.assertFalse(verify_integrity(flipped, None, key) and verify_fingerprint(flipped))
