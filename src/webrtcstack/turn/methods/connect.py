"""Connect and ConnectionBind (RFC 6062 §5.2, §5.4): the TCP relay's two requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webrtcstack.stun.constants import AttrType, ErrorCode
from webrtcstack.stun.errors import ProtocolViolation
from webrtcstack.turn.five_tuple import Transport
from webrtcstack.turn.methods.common import Request, ResponseLater, allocation_for, peer_address
from webrtcstack.turn.tcp_relay import WAITING

if TYPE_CHECKING:
    from webrtcstack.turn.engine import TurnEngine

__all__ = ["handle_connect", "handle_connection_bind"]

_STREAMS = (Transport.TCP, Transport.TLS)


def handle_connect(engine: TurnEngine, request: Request, now: float) -> list[tuple[int, Any]]:
    """RFC 6062 §5.2: connect to a peer from the relayed address; the answer comes once the peer answers.

    The checks in the RFC's order, then ours; the response (CONNECTION-ID, or
    447 when the connection fails or times out) is sent later by
    :meth:`TurnEngine.tcp_connect_result` or the manager's timer.
    """
    settings, manager = engine.settings, engine.manager
    # An allocation on this control connection (437; 441 for another user's), and a TCP one (400).
    allocation = allocation_for(engine, request)
    if not allocation.tcp:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    # XOR-PEER-ADDRESS, well formed (400), allowed by the peer policy (403: no SYN is ever
    # sent to a denied peer), of the relayed family (443).
    value = request.first.get(AttrType.XOR_PEER_ADDRESS)
    if value is None:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    peer = peer_address(engine, request.message, value, allocation)
    # A connection to this peer pending or alive already (446).
    if peer in allocation.tcp_connections:
        raise ProtocolViolation(ErrorCode.CONNECTION_ALREADY_EXISTS)
    # Our limit per allocation (486), then the shell's (max_tcp_connections: 508).
    if len(allocation.tcp_connections) >= settings.tcp_relay_max_connections:
        engine.counters.quota_hit("tcp_relay_connections")
        raise ProtocolViolation(ErrorCode.ALLOCATION_QUOTA_REACHED)
    relay = allocation.relays[6 if ":" in peer[0] else 4]
    connection = manager.tcp_open(allocation, peer, True, now)
    link = manager.relay_opener.connect_tcp(relay, peer, connection)
    if link is None:
        manager.tcp_close(connection)
        engine.counters.quota_hit("tcp_connections")
        raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
    connection.link = link
    connection.answer = engine.answer_later(request, connection)
    raise ResponseLater()


def handle_connection_bind(engine: TurnEngine, request: Request, now: float) -> list[tuple[int, Any]]:
    """RFC 6062 §5.4: make this new TCP/TLS connection the client data connection of a peer connection.

    After the success response the connection carries the peer's bytes as
    they are (the shell switches it over: :meth:`TurnEngine.take_tcp_data_connection`).
    """
    manager = engine.manager
    five_tuple = request.five_tuple
    # A TCP or TLS connection (400) that is neither a control connection nor bound already (400).
    if five_tuple.transport not in _STREAMS or manager.get(five_tuple) is not None \
            or five_tuple in manager.tcp_data:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    # CONNECTION-ID naming a connection that waits for its bind (400).
    value = request.first.get(AttrType.CONNECTION_ID)
    if value is None or len(value) != 4:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    connection = manager.tcp.get(int.from_bytes(value, "big"))
    if connection is None or connection.state != WAITING:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    # The allocation's own user (441): a CONNECTION-ID alone does not hand over someone's peer.
    if connection.allocation.username != request.auth.username:
        raise ProtocolViolation(ErrorCode.WRONG_CREDENTIALS)
    manager.tcp_bind(connection, five_tuple)
    engine.counters.tcp_event("bound")
    return []
