"""Send indications (RFC 8656 §11.2): receiving a Send indication."""

from __future__ import annotations

from typing import TYPE_CHECKING

from webrtcstack.stun.constants import AttrType
from webrtcstack.stun.message import Message
from webrtcstack.turn.five_tuple import FiveTuple
from webrtcstack.turn.methods.common import xor_address

if TYPE_CHECKING:
    from webrtcstack.turn.engine import TurnEngine

__all__ = ["handle_send"]


def handle_send(engine: TurnEngine, five_tuple: FiveTuple, message: Message, now: float) -> None:
    """RFC 8656 §11.2: relay DATA to XOR-PEER-ADDRESS if permitted; otherwise drop silently (counted).

    Indications get no answer, so every failure is a counted drop.  The
    common case never reaches here: :meth:`FastPath.send_indication` takes it.
    """
    counters = engine.counters
    # An allocation for this 5-tuple (else: drop).
    allocation = engine.manager.get(five_tuple)
    if allocation is None:
        counters.drop("no_allocation")
        return
    if allocation.tcp:
        counters.drop("tcp_allocation")  # RFC 6062 §5.1: data to a TCP allocation's peers goes over Connect
        return
    # XOR-PEER-ADDRESS and DATA, well formed (else: drop).
    peer_value = message.get(AttrType.XOR_PEER_ADDRESS)
    data = message.get(AttrType.DATA)
    peer = xor_address(message, peer_value) if peer_value is not None else None
    if peer is None or data is None:
        counters.drop("malformed")
        return
    # A permission for the peer's IP (judged in its normalised form, so an IPv4-mapped or
    # 6to4 spelling of a permitted IPv4 peer counts; the policy refuses what it must).
    host = peer[0]
    if host not in allocation.permissions:
        address = engine.policy.check(host)
        if address is None:
            counters.peers_denied += 1
            counters.drop("peer_denied")
            return
        host = str(address)
        if host not in allocation.permissions:
            counters.drop("no_permission")
            return
    # Relay the DATA value as a UDP datagram from the relayed address of the peer's family.
    allocation.send_to_peer(data, (host, peer[1]), now)
