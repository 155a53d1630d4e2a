"""Test helpers: build and read TURN messages with the one STUN codec (``webrtcstack.stun``).

Values are raw ``bytes`` both ways (``decode(..., typed=False)``), as a test
wants to see exactly what went over the wire.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from webrtcstack.stun.attributes import pack_address, unpack_address
from webrtcstack.stun.constants import MAGIC_COOKIE_BYTES, MessageClass
from webrtcstack.stun.errors import StunDecodeError
from webrtcstack.stun.integrity import verify_integrity, verify_integrity_sha256
from webrtcstack.stun.message import Message
from webrtcstack.stun.message import decode as _decode
from webrtcstack.stun.message import encode as _encode


def encode(method: int, cls: int, transaction_id: bytes, attributes: Iterable[tuple[int, Any]], *,
           key: bytes | None = None, sha256: bool = False, fingerprint: bool = False) -> bytes:
    """A message; with ``key``, MESSAGE-INTEGRITY (or -SHA256 with ``sha256``); then FINGERPRINT if asked."""
    message = Message(method, MessageClass(cls), transaction_id, tuple(attributes))
    return _encode(message, integrity_key=None if sha256 else key, integrity_sha256_key=key if sha256 else None,
                   fingerprint=fingerprint)


def decode(data: bytes) -> Message:
    """A message with raw ``bytes`` values."""
    return _decode(data, typed=False)


def verify(data: bytes, key: bytes, sha256: bool = False) -> bool:
    """True if ``data`` carries a valid MESSAGE-INTEGRITY (or -SHA256) for ``key``."""
    return (verify_integrity_sha256 if sha256 else verify_integrity)(data, None, key)


def xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    """An XOR-…-ADDRESS value."""
    return pack_address((host, port), MAGIC_COOKIE_BYTES + transaction_id)


def parse_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int] | None:
    """``(host, port)`` from an XOR-…-ADDRESS value, or None if malformed."""
    try:
        return unpack_address(value, MAGIC_COOKIE_BYTES + transaction_id)
    except StunDecodeError:
        return None


def password_algorithms_value(algorithms: Sequence[int]) -> bytes:
    """PASSWORD-ALGORITHMS with no parameters."""
    return b"".join(struct.pack("!HH", a, 0) for a in algorithms)


def parse_error_code(value: bytes) -> int:
    """The number in an ERROR-CODE value."""
    return (value[2] & 7) * 100 + value[3]
