# -*- test-case-name: tests.stun.test_binding -*-
"""The STUN Binding service (RFC 8489 §6.3, §7.3), sans-IO.

:class:`BindingHandler` answers Binding requests with the reflexive transport
address the request came from:

* RFC 5389 / RFC 8489 clients (magic cookie present) get XOR-MAPPED-ADDRESS
  only (RFC 8489 §14.2).  MAPPED-ADDRESS is left out on purpose: every client
  with the cookie understands the XOR form, and the plain form is what NAT
  ALGs rewrite.
* RFC 3489 clients (no cookie) get MAPPED-ADDRESS and their 16-byte
  transaction id back (RFC 8489 §12, backwards compatibility).
* Every response carries SOFTWARE (unless configured empty) and FINGERPRINT.
* A request with an unknown comprehension-required attribute (type below
  0x8000) gets 420 with UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1.1); so does a
  CHANGE-REQUEST asking for another address or port, which a single-address
  server cannot honour (RFC 5780 §6.1).
* Requests of other methods get 400: this handler only serves Binding.
* Indications and responses are accepted silently (RFC 8489 §6.3.2, §6.3.3).
* Malformed bytes and a wrong FINGERPRINT raise :class:`StunDecodeError`: the
  caller drops the datagram (or closes the stream) and no reply is sent.

Authentication of Binding requests (ICE's short-term credentials) is not a
server's job here, so MESSAGE-INTEGRITY and USERNAME are understood but not
checked (RFC 8489 §9: a server without credentials processes the request).
"""

from __future__ import annotations

import struct

import attrs

from webrtcstack.stun.attributes import Address, normalize_host
from webrtcstack.stun.constants import REASON_PHRASES, AttrType, ErrorCode, Method, MessageClass
from webrtcstack.stun.errors import StunDecodeError
from webrtcstack.stun.integrity import verify_fingerprint
from webrtcstack.stun.message import (
    Message, attribute_tlv, binding_success, binding_success_for, decode, encode, looks_like_stun,
)

__all__ = ["BindingHandler", "BindingCounters", "error_response"]

_KNOWN_TYPES = frozenset(int(t) for t in AttrType)
#: The first 8 bytes of a Binding request with the magic cookie and no attributes (RFC 8489 §5, §6).
_PLAIN_REQUEST_HEAD = b"\x00\x01\x00\x00\x21\x12\xa4\x42"
#: ... and of one whose only attribute is FINGERPRINT (8 bytes), and that attribute's type and length.
_FINGERPRINTED_REQUEST_HEAD = b"\x00\x01\x00\x08\x21\x12\xa4\x42"
_FINGERPRINT_HEAD = struct.pack("!HH", AttrType.FINGERPRINT, 4)


@attrs.define
class BindingCounters:
    """What the handler saw, for metrics (monotonic counts)."""

    requests: int = 0
    indications: int = 0
    responses: int = 0
    error_responses: int = 0
    ignored: int = 0
    malformed: int = 0
    bad_fingerprint: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return attrs.asdict(self)


def error_response(
    request: Message, code: int, *, software: str = "", reason: str | None = None,
    extra: tuple[tuple[int, object], ...] = (),
) -> bytes:
    """Build an error response echoing the request's transaction id (RFC 8489 §6.3.4).

    :param reason: the reason phrase; ``None`` uses the RFC's phrase.
    :param extra: attributes to add after ERROR-CODE (e.g. UNKNOWN-ATTRIBUTES).
    """
    attributes: list[tuple[int, object]] = [
        (AttrType.ERROR_CODE, (code, REASON_PHRASES.get(code, "") if reason is None else reason)),
        *extra,
    ]
    if software:
        attributes.append((AttrType.SOFTWARE, software))
    response = Message(request.method, MessageClass.ERROR, request.transaction_id, tuple(attributes))
    return encode(response)


class BindingHandler:
    """Answers STUN Binding requests.

    :param software: the SOFTWARE value for responses ("" leaves it out).
    """

    def __init__(self, software: str = "") -> None:
        self.software = software
        self.counters = BindingCounters()
        # The success response comes from the codec's hot-path encoder (the
        # general one costs twice as much), with SOFTWARE encoded once here.
        self._software_tlv = attribute_tlv(AttrType.SOFTWARE, software.encode("utf-8")) if software else b""

    def handle(self, raw: bytes, source: Address, transport: str) -> bytes | None:
        """Process one STUN message from ``source``; return the reply, if any.

        :param raw: one whole message (a datagram, or a frame from the framer).
        :param source: the client's ``(host, port)`` as the socket saw it.
        :param transport: ``"udp"``, ``"tcp"`` or ``"tls"`` (not used in the
            reply; kept so one controller serves every listener).
        :raises StunDecodeError: malformed bytes or a wrong FINGERPRINT; the
            caller drops them.
        """
        counters = self.counters
        n = len(raw)
        if (n == 20 and raw[:8] == _PLAIN_REQUEST_HEAD) or (
                n == 28 and raw[:8] == _FINGERPRINTED_REQUEST_HEAD and raw[20:24] == _FINGERPRINT_HEAD):
            # No attributes but FINGERPRINT, if that: nothing to decode or refuse. The header is the
            # request, and the answer is :meth:`success_response`'s bytes (the general path costs about
            # four times this).
            if n == 28 and not verify_fingerprint(raw):
                counters.bad_fingerprint += 1
                raise StunDecodeError("FINGERPRINT does not match")
            counters.requests += 1
            counters.responses += 1
            return binding_success_for(raw[4:20], (normalize_host(source[0]), source[1]), self._software_tlv)
        message = self.request_of(raw)
        if message is None:
            return None
        if message.method != Method.BINDING:
            counters.error_responses += 1
            return error_response(message, ErrorCode.BAD_REQUEST, software=self.software)
        unknown = self.unknown_required(message)
        if unknown:
            counters.error_responses += 1
            return error_response(
                message, ErrorCode.UNKNOWN_ATTRIBUTE, software=self.software,
                extra=((AttrType.UNKNOWN_ATTRIBUTES, unknown),),
            )
        counters.responses += 1
        return self.success_response(message, source)

    def request_of(self, raw: bytes) -> Message | None:
        """``raw`` decoded if it is a request (counted); None for an indication or a response (counted).

        Shared with RFC 5780's answers (stun/discovery.py).

        :raises StunDecodeError: not STUN, malformed, or a FINGERPRINT that does not match.
        """
        counters = self.counters
        if not looks_like_stun(raw):
            counters.malformed += 1
            raise StunDecodeError("not a STUN message")
        try:
            message = decode(raw)
        except StunDecodeError:
            counters.malformed += 1
            raise
        # RFC 8489 §7.3: a FINGERPRINT that does not match means "not STUN".
        if AttrType.FINGERPRINT in message and not verify_fingerprint(raw):
            counters.bad_fingerprint += 1
            raise StunDecodeError("FINGERPRINT does not match")
        if message.msg_class == MessageClass.INDICATION:
            counters.indications += 1
            return None
        if message.msg_class != MessageClass.REQUEST:
            counters.ignored += 1
            return None
        counters.requests += 1
        return message

    @staticmethod
    def unknown_required(message: Message) -> tuple[int, ...]:
        """Comprehension-required attribute types this handler cannot honour, each once."""
        seen: dict[int, None] = {}
        for attr_type, value in message.attributes:
            if attr_type < 0x8000:
                if attr_type not in _KNOWN_TYPES or (attr_type == AttrType.CHANGE_REQUEST and value & 0x6):
                    seen[int(attr_type)] = None
        return tuple(seen)

    def success_response(self, request: Message, source: Address) -> bytes:
        """The Binding success response for ``request`` from ``source`` (RFC 8489 §7.3.1).

        XOR-MAPPED-ADDRESS (MAPPED-ADDRESS for RFC 3489 clients), SOFTWARE and
        FINGERPRINT, laid out as :func:`encode` would.
        """
        return binding_success(request, (normalize_host(source[0]), source[1]), self._software_tlv)
