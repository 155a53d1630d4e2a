"""What the method handlers share: the request being handled and the checks several methods make."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from webrtcstack.stun.attributes import unpack_address
from webrtcstack.stun.constants import ErrorCode
from webrtcstack.stun.errors import ProtocolViolation, StunDecodeError
from webrtcstack.stun.message import Message
from webrtcstack.turn.allocation import Allocation
from webrtcstack.turn.auth import Auth
from webrtcstack.turn.five_tuple import Address, FiveTuple

if TYPE_CHECKING:
    from webrtcstack.turn.engine import TurnEngine, TurnSettings

__all__ = ["Request", "Handler", "ResponseLater", "allocation_for", "peer_address", "xor_address", "granted_lifetime", "FAMILY_CODE"]

#: REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY codes → IP version (RFC 8656 §18.8).
FAMILY_CODE = {1: 4, 2: 6}


class Request:
    """One authenticated request, as every handler receives it.

    :ivar first: the first value of each attribute type, raw bytes (a
        malformed value is the handler's 400, not a silent drop).
    :ivar to_client: sends bytes back over the 5-tuple (a new allocation keeps it).
    """

    __slots__ = ("five_tuple", "message", "first", "auth", "to_client")

    def __init__(self, five_tuple: FiveTuple, message: Message, first: dict[int, Any], auth: Auth,
                 to_client: Callable[[bytes], Any]) -> None:
        self.five_tuple = five_tuple
        self.message = message
        self.first = first
        self.auth = auth
        self.to_client = to_client


class ResponseLater(Exception):
    """Raised by a handler whose answer comes later (RFC 6062 Connect): nothing is sent or cached now."""


#: A request handler: the success response's attributes, or ProtocolViolation (or ResponseLater).
Handler = Callable[["TurnEngine", Request, float], list[tuple[int, Any]]]


def allocation_for(engine: TurnEngine, request: Request) -> Allocation:
    """The allocation of the request's 5-tuple: 437 if none, 441 if another user's (RFC 8656 §5)."""
    allocation = engine.manager.get(request.five_tuple)
    if allocation is None:
        raise ProtocolViolation(ErrorCode.ALLOCATION_MISMATCH)
    if allocation.username != request.auth.username:
        raise ProtocolViolation(ErrorCode.WRONG_CREDENTIALS)
    return allocation


def xor_address(message: Message, value: bytes) -> Address | None:
    """``(host, port)`` from a raw XOR-…-ADDRESS value of ``message``, or None if malformed."""
    try:
        return unpack_address(value, message.xor_key())
    except StunDecodeError:
        return None


def peer_address(engine: TurnEngine, message: Message, value: bytes, allocation: Allocation) -> Address:
    """One XOR-PEER-ADDRESS, vetted: 400 if malformed, 403 by the peer policy, 443 for a family
    the allocation has no relay in (RFC 8656 §9.1, §12.1; RFC 6156)."""
    peer = xor_address(message, value)
    if peer is None:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    address = engine.policy.check(peer[0])
    if address is None:
        engine.counters.peers_denied += 1
        raise ProtocolViolation(ErrorCode.FORBIDDEN)
    if address.version not in allocation.relays:
        raise ProtocolViolation(ErrorCode.PEER_ADDRESS_FAMILY_MISMATCH)
    return str(address), peer[1]


def granted_lifetime(settings: TurnSettings, value: bytes | None, allow_zero: bool) -> float:
    """RFC 8656 §7.2 step 9 / §7.3: min(requested, maximum), never below the default; 0 only on Refresh.

    :param value: the request's LIFETIME value, if it had one (400 if not 4 bytes).
    """
    if value is None:
        return float(settings.default_lifetime_s)
    if len(value) != 4:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    requested = int.from_bytes(value, "big")
    if requested == 0 and allow_zero:
        return 0.0
    return float(max(settings.default_lifetime_s, min(requested, settings.max_lifetime_s)))
