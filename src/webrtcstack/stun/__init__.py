"""STUN (RFC 8489, RFC 5389, RFC 3489 compatibility) as a sans-IO codec.

Public API, re-exported here:

* :class:`Message`, :func:`decode`, :func:`encode`, :func:`looks_like_stun`,
  :func:`is_channel_data` (``message``);
* :func:`verify_fingerprint`, :func:`verify_integrity`,
  :func:`verify_integrity_sha256`, :func:`long_term_key`,
  :func:`long_term_key_sha256` (``integrity``);
* :class:`StreamFramer` (``framing``); :class:`BindingHandler` (``binding``);
* the enums and constants (``constants``) and the errors (``errors``).

Nothing here imports Twisted, sockets or clocks.
"""

from webrtcstack.stun.binding import BindingCounters, BindingHandler
from webrtcstack.stun.constants import (
    HEADER_LENGTH,
    MAGIC_COOKIE,
    AddressFamily,
    AttrType,
    ErrorCode,
    Method,
    MessageClass,
)
from webrtcstack.stun.errors import ProtocolViolation, StunDecodeError
from webrtcstack.stun.framing import StreamFramer
from webrtcstack.stun.integrity import (
    long_term_key,
    long_term_key_sha256,
    verify_fingerprint,
    verify_integrity,
    verify_integrity_sha256,
)
from webrtcstack.stun.message import Message, decode, encode, is_channel_data, looks_like_stun

__all__ = [
    "AddressFamily",
    "AttrType",
    "BindingCounters",
    "BindingHandler",
    "ErrorCode",
    "HEADER_LENGTH",
    "MAGIC_COOKIE",
    "Message",
    "MessageClass",
    "Method",
    "ProtocolViolation",
    "StreamFramer",
    "StunDecodeError",
    "decode",
    "encode",
    "is_channel_data",
    "long_term_key",
    "long_term_key_sha256",
    "looks_like_stun",
    "verify_fingerprint",
    "verify_integrity",
    "verify_integrity_sha256",
]
