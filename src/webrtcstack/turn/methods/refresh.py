"""Refresh (RFC 8656 §7.3): receiving a Refresh request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webrtcstack.stun.constants import AttrType, ErrorCode
from webrtcstack.stun.errors import ProtocolViolation
from webrtcstack.turn.methods.common import FAMILY_CODE, Request, allocation_for, granted_lifetime

if TYPE_CHECKING:
    from webrtcstack.turn.engine import TurnEngine

__all__ = ["handle_refresh"]


def handle_refresh(engine: TurnEngine, request: Request, now: float) -> list[tuple[int, Any]]:
    """RFC 8656 §7.3: a new lifetime for the allocation, or its end with LIFETIME 0."""
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
    if lifetime == 0:
        engine.manager.delete(allocation)
    else:
        engine.manager.refresh(allocation, lifetime, now)
    # The success response carries the lifetime granted.
    return [(AttrType.LIFETIME, int(lifetime))]
