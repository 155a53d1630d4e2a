# -*- test-case-name: tests.turn.test_wire -*-
"""The TURN view of STUN messages: raw attributes with their offsets.

The engine needs three things a general codec hides: each attribute's byte
offset (MESSAGE-INTEGRITY covers the bytes before it, RFC 8489 §14.5),
the attributes in wire order with duplicates (only the first of a kind
counts, and anything after MESSAGE-INTEGRITY is ignored, §14.5/§14.6), and
cheap encoders for the handful of attributes TURN answers with.  This module
gives exactly that: :func:`decode` walks the TLVs once and checks every length
against the datagram, so no value can reach past the end of the bytes.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Iterable, Sequence

__all__ = [
    "StunDecodeError",
    "Method",
    "MessageClass",
    "Attr",
    "RawMessage",
    "decode",
    "encode",
    "is_stun",
    "message_type",
    "integrity_ok",
    "xor_address",
    "parse_xor_address",
    "error_code_value",
    "MAGIC_COOKIE",
]

MAGIC_COOKIE = 0x2112A442
_MAGIC = struct.pack("!I", MAGIC_COOKIE)
_HEADER = struct.Struct("!HHI12s")
_TLV = struct.Struct("!HH")
_FINGERPRINT_XOR = 0x5354554E


class StunDecodeError(ValueError):
    """Bytes that are not a well-formed STUN message."""


class Method(enum.IntEnum):
    """STUN/TURN methods (RFC 8489 §18.2, RFC 8656 §18)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class MessageClass(enum.IntEnum):
    """The two class bits of the message type."""

    REQUEST = 0
    INDICATION = 1
    SUCCESS = 2
    ERROR = 3


class Attr(enum.IntEnum):
    """Attribute types TURN reads or writes (RFC 8489 §18.3, RFC 8656 §18)."""

    MAPPED_ADDRESS = 0x0001
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001


#: Comprehension-required attribute types this server understands (RFC 8489 §14: 0x0000-0x7FFF).
KNOWN_REQUIRED = frozenset(a.value for a in Attr if a.value < 0x8000) | {
    0x0003,  # CHANGE-REQUEST (RFC 5780): harmless, ignored
    0x0010,  # BANDWIDTH (RFC 5766 draft era, sent by coturn's uclient -a): ignored
    0x0026,  # PADDING (RFC 5780): ignored
}


def message_type(method: int, cls: int) -> int:
    """Interleave method and class bits into the 14-bit message type (RFC 8489 §5)."""
    return ((method & 0x00F) | ((method & 0x070) << 1) | ((method & 0xF80) << 2)
            | ((cls & 1) << 4) | ((cls & 2) << 7))


def split_type(value: int) -> tuple[int, int]:
    """``(method, class)`` from a message type."""
    method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2)
    cls = ((value >> 4) & 1) | ((value >> 7) & 2)
    return method, cls


class RawMessage:
    """A decoded STUN message: header fields and attributes in wire order.

    :ivar attributes: ``(type, value)`` pairs, every one, in order.
    :ivar offsets: the byte offset of each attribute's header.
    :ivar data: the message bytes.
    """

    __slots__ = ("method", "cls", "transaction_id", "attributes", "offsets", "data", "_limit", "_values")

    def __init__(self, method: int, cls: int, transaction_id: bytes,
                 attributes: tuple[tuple[int, bytes], ...], offsets: tuple[int, ...], data: bytes) -> None:
        self.method = method
        self.cls = cls
        self.transaction_id = transaction_id
        self.attributes = attributes
        self.offsets = offsets
        self.data = data
        self._limit = -1
        self._values: dict[int, bytes] | None = None

    def index(self, attr_type: int) -> int:
        """The position of the first attribute of ``attr_type``, or -1."""
        for i, (t, _) in enumerate(self.attributes):
            if t == attr_type:
                return i
        return -1

    def integrity_limit(self) -> int:
        """How many attributes count: those up to and including the integrity ones.

        RFC 8489 §14.5/§14.6: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256
        and FINGERPRINT may follow; after MESSAGE-INTEGRITY-SHA256 only
        FINGERPRINT.  Anything else after them is ignored.
        """
        if self._limit >= 0:
            return self._limit
        attrs = self.attributes
        self._limit = len(attrs)
        for i, (t, _) in enumerate(attrs):
            if t == Attr.MESSAGE_INTEGRITY:
                if i + 1 < len(attrs) and attrs[i + 1][0] == Attr.MESSAGE_INTEGRITY_SHA256:
                    self._limit = i + 2
                else:
                    self._limit = i + 1
                break
            if t == Attr.MESSAGE_INTEGRITY_SHA256:
                self._limit = i + 1
                break
        return self._limit

    def get(self, attr_type: int) -> bytes | None:
        """The value of the first ``attr_type`` before any integrity cut-off."""
        values = self._values
        if values is None:
            values = {}
            for t, v in self.attributes[: self.integrity_limit()]:
                values.setdefault(t, v)
            self._values = values
        return values.get(attr_type)

    def has(self, attr_type: int) -> bool:
        """True if ``attr_type`` is present (within the integrity cut-off)."""
        return self.get(attr_type) is not None

    def unknown_required(self) -> list[int]:
        """Comprehension-required types we do not understand (for 420)."""
        return sorted({t for t, _ in self.attributes[: self.integrity_limit()]
                       if t < 0x8000 and t not in KNOWN_REQUIRED})


def is_stun(data: bytes) -> bool:
    """True if ``data`` looks like STUN (top bits 00 and the magic cookie)."""
    return len(data) >= 20 and data[0] < 0x40 and data[4:8] == _MAGIC


def decode(data: bytes) -> RawMessage:
    """Parse a STUN message, checking every length and a FINGERPRINT if present.

    :raises StunDecodeError: the bytes are not one well-formed STUN message.
    """
    if len(data) < 20:
        raise StunDecodeError("shorter than a STUN header")
    msg_type, length, cookie, transaction_id = _HEADER.unpack_from(data)
    if msg_type & 0xC000:
        raise StunDecodeError("first two bits are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunDecodeError("no magic cookie")
    if length & 3:
        raise StunDecodeError("length is not a multiple of 4")
    if length + 20 != len(data):
        raise StunDecodeError("length does not match the message size")
    attributes: list[tuple[int, bytes]] = []
    offsets: list[int] = []
    pos = 20
    end = 20 + length
    while pos < end:
        if pos + 4 > end:
            raise StunDecodeError("truncated attribute header")
        attr_type, attr_len = _TLV.unpack_from(data, pos)
        value_end = pos + 4 + attr_len
        if value_end > end:
            raise StunDecodeError(f"attribute 0x{attr_type:04x} claims more bytes than the message has")
        attributes.append((attr_type, bytes(data[pos + 4:value_end])))
        offsets.append(pos)
        pos = value_end + (-attr_len & 3)
        if attr_type == Attr.FINGERPRINT:
            if attr_len != 4 or pos != end:
                raise StunDecodeError("FINGERPRINT is not the last attribute")
            expected = (binascii.crc32(data[: offsets[-1]]) ^ _FINGERPRINT_XOR) & 0xFFFFFFFF
            if struct.unpack("!I", attributes[-1][1])[0] != expected:
                raise StunDecodeError("FINGERPRINT does not match")
    if pos != end:
        raise StunDecodeError("attribute padding runs past the message")
    method, cls = split_type(msg_type)
    return RawMessage(method, cls, transaction_id, tuple(attributes), tuple(offsets), bytes(data))


def integrity_ok(message: RawMessage, key: bytes, sha256: bool) -> bool:
    """Check MESSAGE-INTEGRITY(-SHA256) of ``message`` against ``key`` in constant time.

    The HMAC covers the header (with its length adjusted to end just after
    the integrity attribute) and every attribute before it (RFC 8489 §14.5).
    """
    wanted = Attr.MESSAGE_INTEGRITY_SHA256 if sha256 else Attr.MESSAGE_INTEGRITY
    i = message.index(wanted)
    if i < 0:
        return False
    offset = message.offsets[i]
    mac = message.attributes[i][1]
    if sha256:
        if not 16 <= len(mac) <= 32 or len(mac) & 3:
            return False
    elif len(mac) != 20:
        return False
    data = message.data
    adjusted = data[:2] + struct.pack("!H", offset - 20 + 4 + len(mac)) + data[4:offset]
    digest = hmac.new(key, adjusted, hashlib.sha256 if sha256 else hashlib.sha1).digest()
    return hmac.compare_digest(digest[: len(mac)], mac)


def encode(method: int, cls: int, transaction_id: bytes, attributes: Iterable[tuple[int, bytes]], *,
           key: bytes | None = None, sha256: bool = False, fingerprint: bool = False) -> bytes:
    """Build a message; with ``key``, append MESSAGE-INTEGRITY(-SHA256); then FINGERPRINT."""
    parts: list[bytes] = []
    for attr_type, value in attributes:
        parts.append(_TLV.pack(attr_type, len(value)))
        parts.append(value)
        if len(value) & 3:
            parts.append(b"\0" * (-len(value) & 3))
    body = b"".join(parts)
    msg_type = message_type(method, cls)
    if key is not None:
        mac_len = 32 if sha256 else 20
        header = _HEADER.pack(msg_type, len(body) + 4 + mac_len, MAGIC_COOKIE, transaction_id)
        digest = hmac.new(key, header + body, hashlib.sha256 if sha256 else hashlib.sha1).digest()
        body += _TLV.pack(Attr.MESSAGE_INTEGRITY_SHA256 if sha256 else Attr.MESSAGE_INTEGRITY, mac_len) + digest
    if fingerprint:
        header = _HEADER.pack(msg_type, len(body) + 8, MAGIC_COOKIE, transaction_id)
        crc = (binascii.crc32(header + body) ^ _FINGERPRINT_XOR) & 0xFFFFFFFF
        return header + body + _TLV.pack(Attr.FINGERPRINT, 4) + struct.pack("!I", crc)
    return _HEADER.pack(msg_type, len(body), MAGIC_COOKIE, transaction_id) + body


def xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    """The value of an XOR-*-ADDRESS attribute (RFC 8489 §14.2)."""
    packed = ipaddress.ip_address(host).packed
    key = _MAGIC + transaction_id
    family = 1 if len(packed) == 4 else 2
    return struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + bytes(a ^ b for a, b in zip(packed, key))


def parse_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int] | None:
    """``(host, port)`` from an XOR-*-ADDRESS value, or None if malformed."""
    if len(value) < 4:
        return None
    family = value[1]
    port = struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    key = _MAGIC + transaction_id
    if family == 1 and len(value) == 8:
        return str(ipaddress.IPv4Address(bytes(a ^ b for a, b in zip(value[4:8], key)))), port
    if family == 2 and len(value) == 20:
        return str(ipaddress.IPv6Address(bytes(a ^ b for a, b in zip(value[4:20], key)))), port
    return None


def error_code_value(code: int, reason: str = "") -> bytes:
    """An ERROR-CODE value (reason phrase empty unless given)."""
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()


def parse_error_code(value: bytes) -> int:
    """The number in an ERROR-CODE value."""
    return (value[2] & 7) * 100 + value[3]


def u32(value: int) -> bytes:
    """A 32-bit unsigned big-endian value."""
    return struct.pack("!I", value)


def read_u32(value: bytes) -> int | None:
    """A 32-bit value, or None if the length is wrong."""
    return struct.unpack("!I", value)[0] if len(value) == 4 else None


def password_algorithms_value(algorithms: Sequence[int]) -> bytes:
    """PASSWORD-ALGORITHMS with no parameters (RFC 8489 §14.11)."""
    return b"".join(struct.pack("!HH", a, 0) for a in algorithms)
