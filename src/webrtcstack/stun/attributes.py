# -*- test-case-name: tests.stun.test_attributes -*-
"""Typed attribute values: one (decoder, encoder) pair per attribute type.

Value types (RFC 8489 §14, RFC 8656 §18):

* addresses (MAPPED-ADDRESS, ALTERNATE-SERVER, RESPONSE-ORIGIN, OTHER-ADDRESS
  and the XOR-… addresses): ``(host, port)``, family implied by the host text;
  XOR addresses are stored un-XORed, the codec applies the cookie and
  transaction id (RFC 8489 §14.2);
* ERROR-CODE: ``(code, reason)``; ADDRESS-ERROR-CODE: ``(family, code, reason)``;
* UNKNOWN-ATTRIBUTES: tuple of ints;
* 8/16/32/64-bit numbers (LIFETIME, PRIORITY, CHANNEL-NUMBER,
  REQUESTED-TRANSPORT, ICE-CONTROLLING, FINGERPRINT, …): ``int``;
* EVEN-PORT: ``bool`` (the R bit);
* text (USERNAME, REALM, NONCE, SOFTWARE, ALTERNATE-DOMAIN): ``str``;
* flags (DONT-FRAGMENT, USE-CANDIDATE): ``True``;
* PASSWORD-ALGORITHM: ``(algorithm, parameters)``; PASSWORD-ALGORITHMS: a tuple
  of those; ICMP: ``(type, code, error_data)``;
* everything else (DATA, RESERVATION-TOKEN, USERHASH, MESSAGE-INTEGRITY,
  unknown types): ``bytes``.

An encoder given ``bytes`` for any type writes them unchanged, so tests and
relays can carry raw values.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable
from typing import Any

from webrtcstack.stun.constants import AddressFamily, AttrType
from webrtcstack.stun.errors import StunDecodeError

__all__ = [
    "Address",
    "decode_value",
    "encode_value",
    "pack_address",
    "unpack_address",
    "normalize_host",
]

Address = tuple[str, int]

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_ADDRESS_HEAD = struct.Struct("!BBH")
#: The port of an XOR address is XORed with the cookie's high 16 bits (RFC 8489 §14.2).
MAGIC_HIGH = 0x2112


def normalize_host(host: str) -> str:
    """Drop an IPv6 zone (``fe80::1%eth0``) and unmap ``::ffff:a.b.c.d`` to IPv4."""
    if ":" not in host:
        return host
    host = host.split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


@functools.lru_cache(maxsize=4096)
def _packed_host(host: str) -> tuple[int, bytes]:
    """``(family, packed bytes)`` of an IP address text; cached, as clients repeat."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError as e:
        raise ValueError(f"not an IP address: {host!r}") from e
    return (AddressFamily.IPV4 if ip.version == 4 else AddressFamily.IPV6), ip.packed


def _xor(data: bytes, key: bytes) -> bytes:
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(key[:n], "big")).to_bytes(n, "big")


def pack_address(address: Address, xor_key: bytes | None) -> bytes:
    """Encode a (XOR-)MAPPED-ADDRESS style value (RFC 8489 §14.1, §14.2).

    :param xor_key: bytes 4-19 of the header (cookie + transaction id) for
        XOR addresses, ``None`` for plain ones.
    :raises ValueError: if the host is not an IP address.
    """
    host, port = address
    family, packed = _packed_host(host)
    if xor_key is not None:
        port ^= MAGIC_HIGH
        packed = _xor(packed, xor_key)
    return _ADDRESS_HEAD.pack(0, family, port) + packed


def unpack_address(value: bytes, xor_key: bytes | None) -> Address:
    """Decode a (XOR-)MAPPED-ADDRESS style value (RFC 8489 §14.1, §14.2)."""
    if len(value) < 4:
        raise StunDecodeError("address attribute too short")
    family = value[1]
    port = _U16.unpack_from(value, 2)[0]
    raw = value[4:]
    if family == AddressFamily.IPV4:
        if len(raw) != 4:
            raise StunDecodeError("IPv4 address attribute must be 8 bytes")
    elif family == AddressFamily.IPV6:
        if len(raw) != 16:
            raise StunDecodeError("IPv6 address attribute must be 20 bytes")
    else:
        raise StunDecodeError(f"unknown address family {family}")
    if xor_key is not None:
        port ^= MAGIC_HIGH
        raw = _xor(raw, xor_key)
    if family == AddressFamily.IPV4:
        return ("%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3]), port)
    return (str(ipaddress.IPv6Address(raw)), port)


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StunDecodeError("text attribute is not UTF-8") from e


def _exact(n: int) -> Callable[[bytes], None]:
    def check(value: bytes) -> None:
        if len(value) != n:
            raise StunDecodeError(f"attribute must be {n} bytes, not {len(value)}")
    return check


def _error_code(value: bytes) -> tuple[int, str]:
    if len(value) < 4:
        raise StunDecodeError("ERROR-CODE too short")
    code = (value[2] & 0x07) * 100 + value[3]
    return (code, _text(value[4:]))


def _pack_error_code(value: tuple[int, str]) -> bytes:
    code, reason = value
    if not 300 <= code <= 699:
        raise ValueError(f"error code out of range: {code}")
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")


def _address_error_code(value: bytes) -> tuple[int, int, str]:
    if len(value) < 4:
        raise StunDecodeError("ADDRESS-ERROR-CODE too short")
    return (value[0], (value[2] & 0x07) * 100 + value[3], _text(value[4:]))


def _pack_address_error_code(value: tuple[int, int, str]) -> bytes:
    family, code, reason = value
    return struct.pack("!BBBB", family, 0, code // 100, code % 100) + reason.encode("utf-8")


def _unknown_attributes(value: bytes) -> tuple[int, ...]:
    if len(value) % 2:
        raise StunDecodeError("UNKNOWN-ATTRIBUTES length must be even")
    return struct.unpack(f"!{len(value) // 2}H", value)


def _u32(value: bytes) -> int:
    _exact(4)(value)
    return int(_U32.unpack(value)[0])


def _u64(value: bytes) -> int:
    _exact(8)(value)
    return int(_U64.unpack(value)[0])


def _first_u16(value: bytes) -> int:
    """A 16-bit number followed by 16 RFFU bits (CHANNEL-NUMBER, RESPONSE-PORT)."""
    _exact(4)(value)
    return int(_U16.unpack_from(value)[0])


def _first_u8(value: bytes) -> int:
    """An 8-bit number followed by 24 RFFU bits (REQUESTED-TRANSPORT, …-ADDRESS-FAMILY)."""
    _exact(4)(value)
    return value[0]


def _flag(value: bytes) -> bool:
    return True


def _even_port(value: bytes) -> bool:
    if len(value) != 1:
        raise StunDecodeError("EVEN-PORT must be 1 byte")
    return bool(value[0] & 0x80)


def _password_algorithms(value: bytes) -> tuple[tuple[int, bytes], ...]:
    out = []
    pos = 0
    while pos < len(value):
        if len(value) - pos < 4:
            raise StunDecodeError("truncated PASSWORD-ALGORITHMS entry")
        algorithm, length = struct.unpack_from("!HH", value, pos)
        pos += 4
        if pos + length > len(value):
            raise StunDecodeError("truncated PASSWORD-ALGORITHMS parameters")
        out.append((algorithm, bytes(value[pos:pos + length])))
        pos += (length + 3) & ~3
    return tuple(out)


def _pack_password_algorithm(entry: tuple[int, bytes]) -> bytes:
    algorithm, params = entry
    return struct.pack("!HH", algorithm, len(params)) + params + bytes(-len(params) % 4)


def _password_algorithm(value: bytes) -> tuple[int, bytes]:
    entries = _password_algorithms(value)
    if len(entries) != 1:
        raise StunDecodeError("PASSWORD-ALGORITHM must hold exactly one algorithm")
    return entries[0]


def _icmp(value: bytes) -> tuple[int, int, int]:
    _exact(8)(value)
    return (value[2] & 0x7F, value[3], int(_U32.unpack_from(value, 4)[0]))


def _pack_icmp(value: tuple[int, int, int]) -> bytes:
    icmp_type, icmp_code, error_data = value
    return struct.pack("!HBBI", 0, icmp_type, icmp_code, error_data)


_Decoder = Callable[[bytes], Any]
_Encoder = Callable[[Any], bytes]


def _bytes_check(n: int | None) -> _Decoder:
    if n is None:
        return bytes
    check = _exact(n)

    def decode(value: bytes) -> bytes:
        check(value)
        return bytes(value)
    return decode


_PLAIN_ADDRESSES = frozenset({
    AttrType.MAPPED_ADDRESS, AttrType.ALTERNATE_SERVER, AttrType.RESPONSE_ORIGIN, AttrType.OTHER_ADDRESS,
})
_XOR_ADDRESSES = frozenset({
    AttrType.XOR_MAPPED_ADDRESS, AttrType.XOR_PEER_ADDRESS, AttrType.XOR_RELAYED_ADDRESS,
})
ADDRESS_TYPES = _PLAIN_ADDRESSES | _XOR_ADDRESSES

_TEXT_TYPES = (AttrType.USERNAME, AttrType.REALM, AttrType.NONCE, AttrType.SOFTWARE, AttrType.ALTERNATE_DOMAIN)

#: type -> (decoder, encoder), for every type that is not an address.
_TABLE: dict[int, tuple[_Decoder, _Encoder]] = {
    **{t: (_text, lambda v: v.encode("utf-8")) for t in _TEXT_TYPES},
    AttrType.ERROR_CODE: (_error_code, _pack_error_code),
    AttrType.ADDRESS_ERROR_CODE: (_address_error_code, _pack_address_error_code),
    AttrType.UNKNOWN_ATTRIBUTES: (_unknown_attributes, lambda v: struct.pack(f"!{len(v)}H", *v)),
    AttrType.CHANGE_REQUEST: (_u32, _U32.pack),
    AttrType.LIFETIME: (_u32, _U32.pack),
    AttrType.PRIORITY: (_u32, _U32.pack),
    AttrType.FINGERPRINT: (_u32, _U32.pack),
    AttrType.CONNECTION_ID: (_u32, _U32.pack),
    AttrType.ICE_CONTROLLED: (_u64, _U64.pack),
    AttrType.ICE_CONTROLLING: (_u64, _U64.pack),
    AttrType.CHANNEL_NUMBER: (_first_u16, lambda v: struct.pack("!HH", v, 0)),
    AttrType.RESPONSE_PORT: (_first_u16, lambda v: struct.pack("!HH", v, 0)),
    AttrType.REQUESTED_TRANSPORT: (_first_u8, lambda v: struct.pack("!B3x", v)),
    AttrType.REQUESTED_ADDRESS_FAMILY: (_first_u8, lambda v: struct.pack("!B3x", v)),
    AttrType.ADDITIONAL_ADDRESS_FAMILY: (_first_u8, lambda v: struct.pack("!B3x", v)),
    AttrType.EVEN_PORT: (_even_port, lambda v: b"\x80" if v else b"\x00"),
    AttrType.DONT_FRAGMENT: (_flag, lambda v: b""),
    AttrType.USE_CANDIDATE: (_flag, lambda v: b""),
    AttrType.PASSWORD_ALGORITHM: (_password_algorithm, _pack_password_algorithm),
    AttrType.PASSWORD_ALGORITHMS: (
        _password_algorithms, lambda v: b"".join(_pack_password_algorithm(e) for e in v)),
    AttrType.ICMP: (_icmp, _pack_icmp),
    AttrType.MESSAGE_INTEGRITY: (_bytes_check(20), bytes),
    AttrType.RESERVATION_TOKEN: (_bytes_check(8), bytes),
    AttrType.USERHASH: (_bytes_check(32), bytes),
}


def decode_value(attr_type: int, value: bytes, xor_key: bytes) -> Any:
    """Turn one attribute's value bytes into its typed value.

    :param xor_key: header bytes 4-19, for XOR addresses.
    :raises StunDecodeError: if the value is malformed for its type.
    """
    entry = _TABLE.get(attr_type)
    if entry is not None:
        return entry[0](value)
    if attr_type in _XOR_ADDRESSES:
        return unpack_address(value, xor_key)
    if attr_type in _PLAIN_ADDRESSES:
        return unpack_address(value, None)
    if attr_type == AttrType.MESSAGE_INTEGRITY_SHA256:
        if not 16 <= len(value) <= 32 or len(value) % 4:
            raise StunDecodeError("MESSAGE-INTEGRITY-SHA256 must be 16-32 bytes, a multiple of 4")
    return bytes(value)


def encode_value(attr_type: int, value: Any, xor_key: bytes) -> bytes:
    """Turn a typed value into the attribute's value bytes (no header, no padding).

    ``bytes`` values are written unchanged whatever the type.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    entry = _TABLE.get(attr_type)
    if entry is not None:
        return entry[1](value)
    if attr_type in _XOR_ADDRESSES:
        return pack_address(value, xor_key)
    if attr_type in _PLAIN_ADDRESSES:
        return pack_address(value, None)
    raise TypeError(f"no encoder for attribute 0x{attr_type:04x} with value {type(value).__name__}")
