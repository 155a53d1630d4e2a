# -*- test-case-name: tests.stun.test_integrity -*-
"""MESSAGE-INTEGRITY(-SHA256), FINGERPRINT and long-term keys (RFC 8489 §9.2, §14.5-14.7).

Verification works on the raw bytes as received: the HMAC or CRC is
recomputed over everything before the attribute, with the header's length
field set to end just after it, exactly as the sender computed it.  Re-encoding
the decoded message instead would break on padding bytes and on attributes we
do not keep.  Every comparison uses :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import stringprep
import struct
import unicodedata

from webrtcstack.stun.constants import FINGERPRINT_XOR, HEADER_LENGTH, AttrType
from webrtcstack.stun.message import Message

__all__ = [
    "verify_fingerprint",
    "verify_integrity",
    "verify_integrity_sha256",
    "long_term_key",
    "long_term_key_sha256",
    "saslprep",
    "opaque_string",
]

_TLV = struct.Struct("!HH")


def _find(raw: bytes, wanted: int) -> tuple[int, int] | None:
    """Offset and value length of the first attribute of type ``wanted``, walking the TLVs."""
    if len(raw) < HEADER_LENGTH:
        return None
    end = min(len(raw), HEADER_LENGTH + struct.unpack_from("!H", raw, 2)[0])
    pos = HEADER_LENGTH
    while pos + 4 <= end:
        attr_type, length = _TLV.unpack_from(raw, pos)
        if attr_type == wanted:
            if pos + 4 + length > end:
                return None
            return pos, length
        pos += 4 + ((length + 3) & ~3)
    return None


def _with_length(raw: bytes, offset: int, body_length: int) -> bytes:
    """The bytes before ``offset`` with the header length field replaced."""
    return raw[:2] + struct.pack("!H", body_length) + raw[4:offset]


def verify_fingerprint(raw: bytes) -> bool:
    """True if ``raw`` ends with a FINGERPRINT that matches its CRC-32 (RFC 8489 §14.7).

    False if the attribute is missing, wrong, or not the last one.
    """
    found = _find(raw, AttrType.FINGERPRINT)
    if found is None:
        return False
    offset, length = found
    if length != 4 or offset + 8 != len(raw):
        return False
    expected = (binascii.crc32(raw[:offset]) ^ FINGERPRINT_XOR).to_bytes(4, "big")
    return hmac.compare_digest(expected, raw[offset + 4:offset + 8])


def verify_integrity(raw: bytes, message: Message | None, key: bytes) -> bool:
    """Check MESSAGE-INTEGRITY (HMAC-SHA1) of a received message (RFC 8489 §14.5).

    :param raw: the message bytes exactly as received.
    :param message: its decoded form (a quick "is there an MI" check), or ``None``.
    :param key: the short-term password (as UTF-8 bytes after OpaqueString) or
        the long-term key from :func:`long_term_key`.
    """
    if message is not None and AttrType.MESSAGE_INTEGRITY not in message:
        return False
    found = _find(raw, AttrType.MESSAGE_INTEGRITY)
    if found is None:
        return False
    offset, length = found
    if length != 20:
        return False
    signed = _with_length(raw, offset, offset - HEADER_LENGTH + 24)
    expected = hmac.new(key, signed, hashlib.sha1).digest()
    return hmac.compare_digest(expected, raw[offset + 4:offset + 24])


def verify_integrity_sha256(raw: bytes, message: Message | None, key: bytes) -> bool:
    """Check MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256, maybe truncated) (RFC 8489 §14.6)."""
    if message is not None and AttrType.MESSAGE_INTEGRITY_SHA256 not in message:
        return False
    found = _find(raw, AttrType.MESSAGE_INTEGRITY_SHA256)
    if found is None:
        return False
    offset, length = found
    if not 16 <= length <= 32 or length % 4:
        return False
    signed = _with_length(raw, offset, offset - HEADER_LENGTH + 4 + length)
    expected = hmac.new(key, signed, hashlib.sha256).digest()[:length]
    return hmac.compare_digest(expected, raw[offset + 4:offset + 4 + length])


def opaque_string(text: str) -> str:
    """Prepare a realm or password the way RFC 8489 §9.2.2 (OpaqueString) is applied in practice.

    ASCII passes through unchanged (the common case, and what coturn does).
    Otherwise "mapped to nothing" characters go, non-ASCII spaces become
    U+0020 and the result is NFKC-normalised.  That reproduces the worked
    examples of RFC 5769 §2.4 and RFC 8489 Appendix B.1, whose password
    ``"The\u00adM\u00aatr\u2168"`` becomes ``"TheMatrIX"`` (a strict PRECIS
    OpaqueString would keep the compatibility characters and miss both).
    This is the one preparation every key and USERHASH in the stack uses.
    """
    if text.isascii():
        return text
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c))
    return unicodedata.normalize("NFKC", mapped)


def saslprep(text: str) -> str:
    """SASLprep (RFC 4013), which RFC 5389 §15.4 used for passwords.

    Kept for RFC 5389 peers and for the RFC 5769 §2.4 vector, whose password
    "TheM\\u00aatr\\u2168" becomes "TheMatrIX".

    :raises ValueError: for prohibited output or bad bidirectional text.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    result = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
        stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
        stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    for c in result:
        if any(table(c) for table in prohibited):
            raise ValueError(f"prohibited code point U+{ord(c):04X}")
    if any(stringprep.in_table_d1(c) for c in result):
        if any(stringprep.in_table_d2(c) for c in result):
            raise ValueError("mixed bidirectional text")
        if not (stringprep.in_table_d1(result[0]) and stringprep.in_table_d1(result[-1])):
            raise ValueError("RandALCat text must start and end with RandALCat")
    return result


def _key_input(username: str, realm: str, password: str) -> bytes:
    return f"{username}:{opaque_string(realm)}:{opaque_string(password)}".encode("utf-8")


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """The 16-byte MD5 long-term key (RFC 8489 §9.2.2, PASSWORD-ALGORITHM MD5).

    ``MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))``.
    """
    return hashlib.md5(_key_input(username, realm, password)).digest()


def long_term_key_sha256(username: str, realm: str, password: str) -> bytes:
    """The 32-byte SHA-256 long-term key (RFC 8489 §9.2.2, PASSWORD-ALGORITHM SHA-256)."""
    return hashlib.sha256(_key_input(username, realm, password)).digest()
