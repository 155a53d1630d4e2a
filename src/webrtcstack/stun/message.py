# -*- test-case-name: tests.stun.test_message -*-
"""The STUN message: a frozen value, and ``decode`` / ``encode`` (RFC 8489 §5, §14).

Compatibility:

* RFC 5389 / RFC 8489 messages carry the magic cookie; their transaction id
  is 12 bytes.
* RFC 3489 ("classic STUN") messages have no cookie; the whole 16 bytes after
  the length are the transaction id.  :attr:`Message.transaction_id` is then
  16 bytes long and :attr:`Message.classic` is true; encoding such a message
  echoes the 16 bytes, so a reply reaches an old client intact.

Attributes are an ordered tuple of ``(AttrType | int, value)`` pairs, so order
and duplicates survive.  On decode, attributes after MESSAGE-INTEGRITY are
dropped except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, and attributes after
MESSAGE-INTEGRITY-SHA256 are dropped except FINGERPRINT (RFC 8489 §14.5,
§14.6); nothing after FINGERPRINT is kept (§14.7).

The hot paths (a TURN request's response, a Binding answer, a Data indication
to the client, a Send indication from it) use the specialised encoders and the
one scanner at the end of this module.  They lay bytes out exactly as
:func:`encode` / :func:`decode` would; ``tests/stun/test_templates.py`` holds
each one byte-equal to the general codec.  Nothing outside this module builds
or walks a STUN message by hand.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import struct
from collections.abc import Iterable
from typing import Any

import attrs

from webrtcstack.stun.attributes import Address, decode_value, encode_value, pack_address
from webrtcstack.stun.constants import (
    FINGERPRINT_XOR,
    HEADER_LENGTH,
    MAGIC_COOKIE,
    MAGIC_COOKIE_BYTES,
    AttrType,
    Method,
    MessageClass,
)
from webrtcstack.stun.errors import StunDecodeError

__all__ = [
    "Message",
    "decode",
    "encode",
    "looks_like_stun",
    "is_channel_data",
    "message_type",
    "split_message_type",
    "encode_response",
    "packed_xor_address",
    "attribute_tlv",
    "binding_success",
    "binding_success_for",
    "data_indication",
    "xor_peer_address_tlv",
    "scan_send_indication",
]

_HEADER = struct.Struct("!HH")
_TLV = struct.Struct("!HH")

#: Attributes the encoder computes itself; any copy in ``attributes`` is skipped.
_COMPUTED = frozenset({AttrType.MESSAGE_INTEGRITY, AttrType.MESSAGE_INTEGRITY_SHA256, AttrType.FINGERPRINT})

_METHODS = {m.value: m for m in Method}
_ATTR_TYPES = {a.value: a for a in AttrType}


def message_type(method: int, msg_class: int) -> int:
    """Interleave the 12 method bits and 2 class bits into the 14-bit type (RFC 8489 §5)."""
    if not 0 <= method <= 0xFFF:
        raise ValueError(f"method out of range: {method}")
    return ((method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2)
            | ((msg_class & 1) << 4) | ((msg_class & 2) << 7))


def split_message_type(value: int) -> tuple[int, MessageClass]:
    """The inverse of :func:`message_type`: ``(method, class)``."""
    method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2)
    msg_class = MessageClass(((value >> 4) & 1) | ((value >> 7) & 2))
    return method, msg_class


@attrs.frozen
class Message:
    """One STUN message.

    :ivar method: a :class:`Method`, or a plain int for methods we do not know.
    :ivar msg_class: request, indication, success or error response.
    :ivar transaction_id: 12 bytes, or 16 for an RFC 3489 (no cookie) message.
    :ivar attributes: ``(type, value)`` pairs in wire order, typed as
        described in :mod:`webrtcstack.stun.attributes`.
    """

    method: int
    msg_class: MessageClass
    transaction_id: bytes
    attributes: tuple[tuple[int, Any], ...] = ()

    @property
    def classic(self) -> bool:
        """True for an RFC 3489 message without the magic cookie."""
        return len(self.transaction_id) == 16

    @property
    def has_cookie(self) -> bool:
        """True for an RFC 5389 / RFC 8489 message (the opposite of :attr:`classic`)."""
        return len(self.transaction_id) == 12

    def get(self, attr_type: int, default: Any = None) -> Any:
        """The value of the first attribute of this type, or ``default``."""
        for t, v in self.attributes:
            if t == attr_type:
                return v
        return default

    def get_all(self, attr_type: int) -> list[Any]:
        """The values of every attribute of this type, in order."""
        return [v for t, v in self.attributes if t == attr_type]

    def __contains__(self, attr_type: int) -> bool:
        return any(t == attr_type for t, _ in self.attributes)

    def xor_key(self) -> bytes:
        """Header bytes 4-19: what XOR addresses are XORed with (RFC 8489 §14.2)."""
        return MAGIC_COOKIE_BYTES + self.transaction_id if self.has_cookie else self.transaction_id


def looks_like_stun(data: bytes) -> bool:
    """Cheap classifier: the first two bits are 00 (RFC 8489 §5, RFC 7983).

    Needs only the first byte; it says nothing about validity.
    """
    return len(data) > 0 and data[0] < 0x40


def is_channel_data(data: bytes) -> bool:
    """Cheap classifier: the first two bits are 01, so channel 0x4000-0x7FFF (RFC 8656 §12).

    Never true when :func:`looks_like_stun` is.
    """
    return len(data) > 0 and 0x40 <= data[0] < 0x80


def decode(data: bytes, *, typed: bool = True) -> Message:
    """Parse one whole STUN message (a datagram, or a frame from the stream framer).

    Every length is checked against the data, so no value reaches past the
    end of the bytes; attributes past the integrity ones are dropped (see the
    module docstring).  FINGERPRINT and MESSAGE-INTEGRITY are not verified here:
    that needs the raw bytes (:mod:`webrtcstack.stun.integrity`).

    :param typed: decode each value to its type (see
        :mod:`webrtcstack.stun.attributes`).  With ``False`` every value stays
        the ``bytes`` it was on the wire: cheaper, and a server can then answer
        a malformed value with 400 instead of dropping the whole message.
    :raises StunDecodeError: for anything that is not exactly one valid message
        (with ``typed``, also for a malformed value), and for nothing else.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StunDecodeError("not bytes")
    data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise StunDecodeError("shorter than a STUN header")
    msg_type, length = _HEADER.unpack_from(data)
    if msg_type & 0xC000:
        raise StunDecodeError("first two bits are not zero")
    if length % 4:
        raise StunDecodeError("message length is not a multiple of 4")
    if HEADER_LENGTH + length != len(data):
        raise StunDecodeError("message length does not match the data")
    method, msg_class = split_message_type(msg_type)
    if data[4:8] == MAGIC_COOKIE_BYTES:
        transaction_id = data[8:20]
    else:
        transaction_id = data[4:20]
    xor_key = data[4:20]

    attributes: list[tuple[int, Any]] = []
    pos = HEADER_LENGTH
    end = len(data)
    # 0: keep all; 1: after MI (keep MI-SHA256, FINGERPRINT); 2: after MI-SHA256
    # (keep FINGERPRINT); 3: after FINGERPRINT (keep nothing).
    stage = 0
    while pos < end:
        if end - pos < 4:
            raise StunDecodeError("truncated attribute header")
        attr_type, attr_length = _TLV.unpack_from(data, pos)
        value_start = pos + 4
        value_end = value_start + attr_length
        if value_end > end:
            raise StunDecodeError(f"attribute 0x{attr_type:04x} overruns the message")
        pos = value_start + ((attr_length + 3) & ~3)
        if pos > end:
            raise StunDecodeError(f"attribute 0x{attr_type:04x} padding overruns the message")
        keep = (stage == 0
                or (stage == 1 and attr_type in (AttrType.MESSAGE_INTEGRITY_SHA256, AttrType.FINGERPRINT))
                or (stage == 2 and attr_type == AttrType.FINGERPRINT))
        if not keep:
            continue
        value = data[value_start:value_end]
        if typed:
            value = decode_value(attr_type, value, xor_key)
        attributes.append((_ATTR_TYPES.get(attr_type, attr_type), value))
        if attr_type == AttrType.MESSAGE_INTEGRITY:
            stage = max(stage, 1)
        elif attr_type == AttrType.MESSAGE_INTEGRITY_SHA256:
            stage = max(stage, 2)
        elif attr_type == AttrType.FINGERPRINT:
            stage = 3
    return Message(
        method=_METHODS.get(method, method),
        msg_class=msg_class,
        transaction_id=transaction_id,
        attributes=tuple(attributes),
    )


def _tlv(attr_type: int, value: bytes, pad: bytes = b"\x00\x00\x00") -> bytes:
    return _TLV.pack(attr_type, len(value)) + value + pad[:-len(value) % 4]


def encode(
    message: Message,
    *,
    integrity_key: bytes | None = None,
    integrity_sha256_key: bytes | None = None,
    fingerprint: bool = True,
    pad_byte: int = 0,
) -> bytes:
    """Serialise a message, appending the computed attributes (RFC 8489 §14.5-14.7).

    MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT entries in
    ``message.attributes`` are skipped; they are computed here, in that order,
    each over the header with the length adjusted to end just after it.
    Padding is zero bytes.

    :param integrity_key: HMAC-SHA1 key (short-term password, or a long-term key).
    :param integrity_sha256_key: HMAC-SHA256 key.
    :param fingerprint: append FINGERPRINT (CRC-32 XOR 0x5354554e).
    :param pad_byte: the padding value.  RFC 8489 §14 wants zero; RFC 5389
        allowed anything and the RFC 5769 §2.1-2.3 vectors use 0x20, so tests
        can reproduce them byte for byte.
    """
    tid = message.transaction_id
    if len(tid) == 12:
        xor_key = MAGIC_COOKIE_BYTES + tid
    elif len(tid) == 16:
        xor_key = tid
    else:
        raise ValueError("transaction id must be 12 bytes (or 16 for RFC 3489)")
    pad = bytes((pad_byte,)) * 3
    body = b"".join(
        _tlv(t, encode_value(t, v, xor_key), pad) for t, v in message.attributes if t not in _COMPUTED
    )
    msg_type = message_type(message.method, message.msg_class)

    def header(body_length: int) -> bytes:
        return _HEADER.pack(msg_type, body_length) + xor_key

    if integrity_key is not None:
        mac = hmac.new(integrity_key, header(len(body) + 24) + body, hashlib.sha1).digest()
        body += _tlv(AttrType.MESSAGE_INTEGRITY, mac)
    if integrity_sha256_key is not None:
        mac = hmac.new(integrity_sha256_key, header(len(body) + 36) + body, hashlib.sha256).digest()
        body += _tlv(AttrType.MESSAGE_INTEGRITY_SHA256, mac)
    if fingerprint:
        crc = binascii.crc32(header(len(body) + 8) + body) ^ FINGERPRINT_XOR
        body += _tlv(AttrType.FINGERPRINT, struct.pack("!I", crc))
    if len(body) > 0xFFFF:
        raise ValueError("message too long")
    return header(len(body)) + body


# ----------------------------------------------------------------------
# The hot paths: the same bytes as encode()/decode(), built or read directly.
# ----------------------------------------------------------------------

_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_MI_TLV = _TLV.pack(AttrType.MESSAGE_INTEGRITY, 20)
_MI256_TLV = _TLV.pack(AttrType.MESSAGE_INTEGRITY_SHA256, 32)
_FINGERPRINT_TLV = _TLV.pack(AttrType.FINGERPRINT, 4)
_MESSAGE_TYPES: dict[tuple[int, int], int] = {}


def encode_response(method: int, msg_class: int, transaction_id: bytes, attrs: Iterable[tuple[int, Any]],
                    key: bytes | None, sha256: bool, fingerprint: bool) -> bytes:
    """Encode one response the way :func:`encode` does, for the TURN request path.

    The same bytes as ``encode(Message(...), integrity_key=…)`` (a test holds
    the two together), without building a :class:`Message` or dispatching on
    values that are already bytes; the HMAC and CRC are one-shot calls.

    :param transaction_id: 12 bytes (the engine answers no RFC 3489 message).
    :param key: signs with MESSAGE-INTEGRITY, or with MESSAGE-INTEGRITY-SHA256 if ``sha256``.
    :param fingerprint: append FINGERPRINT.
    """
    msg_type = _MESSAGE_TYPES.get((method, msg_class))
    if msg_type is None:
        msg_type = _MESSAGE_TYPES[(method, msg_class)] = message_type(method, msg_class)
    xor_key = MAGIC_COOKIE_BYTES + transaction_id
    pack = _TLV.pack
    parts = []
    for attr_type, value in attrs:
        if value.__class__ is not bytes:
            value = encode_value(attr_type, value, xor_key)
        n = len(value)
        parts.append(pack(attr_type, n))
        parts.append(value)
        if n & 3:
            parts.append(_PAD[n & 3])
    body = b"".join(parts)
    if key is not None:
        if sha256:
            mac = hmac.digest(key, pack(msg_type, len(body) + 36) + xor_key + body, "sha256")
            body += _MI256_TLV + mac
        else:
            mac = hmac.digest(key, pack(msg_type, len(body) + 24) + xor_key + body, "sha1")
            body += _MI_TLV + mac
    if fingerprint:
        crc = binascii.crc32(pack(msg_type, len(body) + 8) + xor_key + body) ^ FINGERPRINT_XOR
        body += _FINGERPRINT_TLV + crc.to_bytes(4, "big")
    if len(body) > 0xFFFF:
        raise ValueError("message too long")
    return pack(msg_type, len(body)) + xor_key + body


_HOST_HEADS: dict[str, tuple[bytes, int, int]] = {}
_HOST_HEADS_MAX = 4096
_MAGIC_HIGH = int.from_bytes(MAGIC_COOKIE_BYTES[:2], "big")


def packed_xor_address(address: Address, xor_key: bytes) -> bytes:
    """An XOR-…-ADDRESS value: the same bytes as the codec's ``encode_value`` for it.

    The host's packed form (from the codec's :func:`pack_address`, so the
    same parsing and the same errors) is kept per host text in a bounded
    table: every Allocate answer carries two addresses, and parsing the text
    each time was a measurable part of the request path.

    :param xor_key: the magic cookie and the transaction ID (16 bytes).
    :raises ValueError: if the host is not an IP address.
    """
    host, port = address
    entry = _HOST_HEADS.get(host)
    if entry is None:
        plain = pack_address((host, 0), None)
        if len(_HOST_HEADS) >= _HOST_HEADS_MAX:
            _HOST_HEADS.clear()
        entry = _HOST_HEADS[host] = (plain[:2], int.from_bytes(plain[4:], "big"), len(plain) - 4)
    head, packed, n = entry
    return (head + (port ^ _MAGIC_HIGH).to_bytes(2, "big")
            + (packed ^ int.from_bytes(xor_key[:n], "big")).to_bytes(n, "big"))


def attribute_tlv(attr_type: int, value: bytes) -> bytes:
    """One attribute as it goes on the wire: type, length, value and zero padding."""
    return _TLV.pack(attr_type, len(value)) + value + _PAD[len(value) & 3]


_BINDING_SUCCESS = message_type(Method.BINDING, MessageClass.SUCCESS)


def binding_success(request: Message, mapped: Address, software_tlv: bytes = b"") -> bytes:
    """A Binding success response (RFC 8489 §7.3.1): the mapped address, SOFTWARE, FINGERPRINT.

    XOR-MAPPED-ADDRESS for a client with the magic cookie; MAPPED-ADDRESS and
    the 16-byte transaction id echoed for an RFC 3489 client.

    :param mapped: the client's reflexive ``(host, port)``, host normalised.
    :param software_tlv: the SOFTWARE attribute from :func:`attribute_tlv`, or empty.
    """
    xor_key = request.xor_key()
    if request.has_cookie:
        return binding_success_for(xor_key, mapped, software_tlv)
    value = pack_address(mapped, None)
    return _binding_success_body(xor_key, _TLV.pack(AttrType.MAPPED_ADDRESS, len(value)) + value + software_tlv)


_XOR_MAPPED_ADDRESS = int(AttrType.XOR_MAPPED_ADDRESS)


def binding_success_for(xor_key: bytes, mapped: Address, software_tlv: bytes = b"") -> bytes:
    """:func:`binding_success` for a request with the magic cookie, from its header's last 16 bytes.

    The same bytes, without a decoded :class:`Message`: a Binding request with
    no attributes (what browsers and most clients send a STUN server) is
    answered from its header alone (stun/binding.py).

    :param xor_key: the request's bytes 4-19 (the magic cookie and the transaction id).
    """
    value = packed_xor_address(mapped, xor_key)
    return _binding_success_body(xor_key, _TLV.pack(_XOR_MAPPED_ADDRESS, len(value)) + value + software_tlv)


def _binding_success_body(xor_key: bytes, body: bytes) -> bytes:
    head = _TLV.pack(_BINDING_SUCCESS, len(body) + 8) + xor_key
    crc = binascii.crc32(body, binascii.crc32(head)) ^ FINGERPRINT_XOR
    return head + body + _FINGERPRINT_TLV + crc.to_bytes(4, "big")


_DATA_INDICATION = message_type(Method.DATA, MessageClass.INDICATION)
_INDICATION_HEADER = struct.Struct("!HHI")
_DATA_TLV = int(AttrType.DATA)


def xor_peer_address_tlv(peer: Address, transaction_id: bytes) -> bytes:
    """The XOR-PEER-ADDRESS attribute (header included) for a Data indication with ``transaction_id``."""
    value = pack_address(peer, MAGIC_COOKIE_BYTES + transaction_id)
    return _TLV.pack(AttrType.XOR_PEER_ADDRESS, len(value)) + value


def data_indication(peer_tlv: bytes, transaction_id: bytes, data: bytes) -> bytes:
    """A Data indication (RFC 8656 §11.3): XOR-PEER-ADDRESS, then DATA; no FINGERPRINT.

    :param peer_tlv: from :func:`xor_peer_address_tlv` with the same ``transaction_id``
        (kept per peer by the caller: it is the same for every datagram).
    """
    n = len(data)
    pad = _PAD[n & 3]
    return b"".join((
        _INDICATION_HEADER.pack(_DATA_INDICATION, len(peer_tlv) + 4 + n + len(pad), MAGIC_COOKIE),
        transaction_id, peer_tlv, _TLV.pack(_DATA_TLV, n), data, pad,
    ))


_XOR_PEER_ADDRESS = int(AttrType.XOR_PEER_ADDRESS)
_DONT_FRAGMENT = int(AttrType.DONT_FRAGMENT)
_FINGERPRINT = int(AttrType.FINGERPRINT)


def scan_send_indication(data: bytes) -> tuple[bytes, bytes] | None:
    """``(XOR-PEER-ADDRESS value, DATA value)`` of a plain Send indication, or None.

    The per-datagram reader for Send indications (RFC 8656 §11.2): one walk
    over the attributes, every length checked against the datagram.  It
    answers only the common case and says None for anything else (another
    message type, a missing attribute, any attribute besides XOR-PEER-ADDRESS,
    DATA, DONT-FRAGMENT and a matching FINGERPRINT, bytes past the last
    attribute); the caller then uses :func:`decode`, which has the last word.
    The first of each attribute counts, as in :func:`decode`.
    """
    size = len(data)
    if size < 20 or data[0] != 0 or data[1] != 0x16 or data[4:8] != MAGIC_COOKIE_BYTES \
            or ((data[2] << 8) | data[3]) + 20 != size:
        return None
    pos = 20
    peer_value = None
    payload = None
    while pos + 4 <= size:
        attr_type = (data[pos] << 8) | data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 4 + length
        if end > size:
            return None
        if attr_type == _XOR_PEER_ADDRESS:
            if peer_value is None:
                peer_value = data[pos + 4:end]
        elif attr_type == _DATA_TLV:
            if payload is None:
                payload = data[pos + 4:end]
        elif attr_type == _FINGERPRINT:
            if length != 4 or end != size or \
                    (binascii.crc32(data[:pos]) ^ FINGERPRINT_XOR) != int.from_bytes(data[pos + 4:end], "big"):
                return None
        elif attr_type != _DONT_FRAGMENT:
            return None
        pos = end + (-length & 3)
    if peer_value is None or payload is None or pos != size:
        return None
    return peer_value, payload
