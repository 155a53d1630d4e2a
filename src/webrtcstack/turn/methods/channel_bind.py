"""ChannelBind (RFC 8656 §12.2): receiving a ChannelBind request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webrtcstack.stun.constants import AttrType, ErrorCode
from webrtcstack.stun.errors import ProtocolViolation
from webrtcstack.turn.methods.common import Request, allocation_for, peer_address

if TYPE_CHECKING:
    from webrtcstack.turn.engine import TurnEngine

__all__ = ["handle_channel_bind"]


def handle_channel_bind(engine: TurnEngine, request: Request, now: float) -> list[tuple[int, Any]]:
    """RFC 8656 §12.2: bind a channel number to a peer, or refresh the binding."""
    settings, manager = engine.settings, engine.manager
    allocation = allocation_for(engine, request)
    if allocation.tcp:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)  # RFC 6062 §5.1: a TCP allocation has no channels
    number_value = request.first.get(AttrType.CHANNEL_NUMBER)
    peer_value = request.first.get(AttrType.XOR_PEER_ADDRESS)
    # Step 1: CHANNEL-NUMBER and XOR-PEER-ADDRESS present, the number in 0x4000-0x4FFF
    # (or up to 0x7FFE, RFC 5766's range, with legacy_channel_numbers) -> else 400.
    if number_value is None or peer_value is None or len(number_value) != 4:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    number = int.from_bytes(number_value[:2], "big")
    if not 0x4000 <= number <= settings.max_channel_number:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    # The peer: well formed (400), allowed (403), of a relayed family (443).
    peer = peer_address(engine, request.message, peer_value, allocation)
    # Steps 2 and 3: the number not bound to another peer, nor the peer to another number -> 400.
    bound = allocation.channels.get(number)
    if bound is not None and bound.peer != peer:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    other = allocation.bindings_by_peer.get(peer)
    if other is not None and other.number != number:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    # Our limits on channels and permissions per allocation (508).
    if bound is None and len(allocation.channels) >= settings.max_channels:
        engine.counters.quota_hit("channels")
        raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
    if bound is None and peer[0] not in allocation.permissions \
            and len(allocation.permissions) >= settings.max_permissions:
        engine.counters.quota_hit("permissions")
        raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
    # Step 4: install or refresh the permission for the peer's IP (300 s), then bind or
    # refresh the channel (600 s); the binding enters both fast-path tables.
    manager.install_permission(allocation, peer[0], settings.permission_lifetime_s, now)
    manager.bind_channel(allocation, number, peer, settings.channel_lifetime_s, now)
    return []
