"""Refresh (RFC 8656 §7.3): receiving a Refresh request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webrtcstack.stun.constants import AttrType, ErrorCode
from webrtcstack.stun.errors import ProtocolViolation
from webrtcstack.turn.allocation import Allocation
from webrtcstack.turn.five_tuple import Transport
from webrtcstack.turn.methods.allocate import issue_ticket
from webrtcstack.turn.methods.common import FAMILY_CODE, Request, allocation_for, granted_lifetime

if TYPE_CHECKING:
    from webrtcstack.turn.engine import TurnEngine

__all__ = ["handle_refresh"]


def handle_refresh(engine: TurnEngine, request: Request, now: float) -> list[tuple[int, Any]]:
    """RFC 8656 §7.3: a new lifetime for the allocation, or its end with LIFETIME 0."""
    ticket = request.first.get(AttrType.MOBILITY_TICKET)
    if ticket is not None:
        # RFC 8016 §3.2: the allocation is the ticket's, wherever the request comes from.
        allocation = _mobile_allocation(engine, request, ticket, now)
    else:
        # The allocation of this 5-tuple and user (437 / 441).
        allocation = allocation_for(engine, request)
    # A REQUESTED-ADDRESS-FAMILY the allocation has no relay in -> 443.
    requested_family = request.first.get(AttrType.REQUESTED_ADDRESS_FAMILY)
    if requested_family is not None:
        family = FAMILY_CODE.get(requested_family[0]) if requested_family else None
        if family is None or family not in allocation.relays:
            raise ProtocolViolation(ErrorCode.PEER_ADDRESS_FAMILY_MISMATCH)
    # The lifetime granted: 0 deletes the allocation at once; else min(requested, max), at least the default.
    lifetime = granted_lifetime(engine.settings, request.first.get(AttrType.LIFETIME), allow_zero=True)
    if ticket is not None and request.five_tuple != allocation.five_tuple:
        # Every check passed: the allocation moves here, and its old 5-tuple is forgotten.
        engine.manager.move(allocation, request.five_tuple, request.to_client)
    if lifetime == 0:
        engine.manager.delete(allocation)
    else:
        engine.manager.refresh(allocation, lifetime, now)
    # The success response carries the lifetime granted (and, for a mobile allocation, a new ticket).
    attrs: list[tuple[int, Any]] = [(AttrType.LIFETIME, int(lifetime))]
    if ticket is not None and lifetime:
        attrs.append((AttrType.MOBILITY_TICKET, issue_ticket(engine, allocation)))
    return attrs


def _mobile_allocation(engine: TurnEngine, request: Request, ticket: bytes, now: float) -> Allocation:
    """RFC 8016 §3.2: the allocation a MOBILITY-TICKET names (the caller moves it once all checks pass).

    405 if mobility is off; 400 for a ticket that is forged, altered, expired or
    not the newest one issued (a replay); 437 if its allocation is gone or this
    5-tuple holds another allocation; 441 if it belongs to another user.
    """
    if not engine.settings.mobility:
        raise ProtocolViolation(ErrorCode.MOBILITY_FORBIDDEN)
    opened = engine.tickets.open(ticket, now)
    if opened is None:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    allocation = engine.manager.find(opened.allocation_id)
    if allocation is None or not allocation.mobile:
        raise ProtocolViolation(ErrorCode.ALLOCATION_MISMATCH)
    if opened.username != request.auth.username or allocation.username != request.auth.username:
        raise ProtocolViolation(ErrorCode.WRONG_CREDENTIALS)
    if opened.generation != allocation.ticket_generation:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    if request.five_tuple != allocation.five_tuple and (
            engine.manager.get(request.five_tuple) is not None or request.five_tuple.transport is not Transport.UDP):
        raise ProtocolViolation(ErrorCode.ALLOCATION_MISMATCH)
    return allocation
