"""CreatePermission (RFC 8656 §9.2): receiving a CreatePermission request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webrtcstack.stun.constants import AttrType, ErrorCode
from webrtcstack.stun.errors import ProtocolViolation
from webrtcstack.turn.methods.common import Request, allocation_for, peer_address

if TYPE_CHECKING:
    from webrtcstack.turn.engine import TurnEngine

__all__ = ["handle_create_permission"]


def handle_create_permission(engine: TurnEngine, request: Request, now: float) -> list[tuple[int, Any]]:
    """RFC 8656 §9.2: install or refresh a permission for every XOR-PEER-ADDRESS, all or none."""
    allocation = allocation_for(engine, request)
    # At least one XOR-PEER-ADDRESS (400); each one well formed (400), allowed by policy (403)
    # and of a family the allocation relays (443).  Only the IP address counts, not the port.
    values = request.message.get_all(AttrType.XOR_PEER_ADDRESS)
    if not values:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    hosts = {peer_address(engine, request.message, value, allocation)[0] for value in values}
    # Our limit on permissions per allocation (508), checked before anything is installed.
    new = [host for host in hosts if host not in allocation.permissions]
    if len(allocation.permissions) + len(new) > engine.settings.max_permissions:
        engine.counters.quota_hit("permissions")
        raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
    # Install or refresh each permission for the permission lifetime (300 s).
    for host in hosts:
        engine.manager.install_permission(allocation, host, engine.settings.permission_lifetime_s, now)
    return []
