# -*- test-case-name: tests.turn.test_tcp_relay -*-
"""RFC 6062 TCP relay: the peer TCP connections of a TCP allocation (sans-IO).

A client on a TCP or TLS control connection allocates with
REQUESTED-TRANSPORT TCP; its relayed transport address is then a listening
TCP socket.  Each peer TCP connection is one :class:`TcpConnection`:

* **Connect** (§5.2): the client names a peer; the server connects to it
  from the relayed address (state ``connecting``) and answers the Connect
  once the connection is up (CONNECTION-ID) or has failed or timed out
  (447), :data:`CONNECT_TIMEOUT_S` at most.
* **An incoming connection** (§5.3) from a peer whose IP has a permission is
  accepted and announced with a ConnectionAttempt indication on the control
  connection; without a permission it is closed at once.
* Either way the connection then waits (``waiting``) for the client to open
  a new TCP/TLS connection to the server and send **ConnectionBind** with the
  CONNECTION-ID, for :data:`CONNECTION_BIND_TIMEOUT_S` at most (§5.3: then
  the peer connection is closed).  What the peer sends meanwhile is held,
  ``tcp_relay_buffer_bytes`` at most; past that the shell stops reading, so
  TCP flow control holds the peer back and nothing is lost.
* Once bound (``bound``) the two connections are one byte pipe: the shell
  writes what one side reads to the other, calling :meth:`TcpConnection.relayed`
  per chunk for the counters and the ``max_bps`` budget (a pause, never a
  drop: this is TCP).
* When either side of a pipe closes, the other is closed; when the
  allocation ends, all of its connections are closed.

The allocation manager owns the tables and the timers; this module holds the
connection object and what the shell implements (:class:`PeerLink`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from webrtcstack.turn.five_tuple import Address, FiveTuple, format_address

if TYPE_CHECKING:
    from webrtcstack.turn.allocation import Allocation

__all__ = ["TcpConnection", "PeerLink", "CONNECT_TIMEOUT_S", "CONNECTION_BIND_TIMEOUT_S", "TCP"]

#: REQUESTED-TRANSPORT's protocol number for TCP (RFC 6062 §6.1).
TCP = 6
#: RFC 6062 §5.3: a peer connection that gets no ConnectionBind in 30 s is closed.
CONNECTION_BIND_TIMEOUT_S = 30.0
#: RFC 6062 §5.2: how long a Connect waits for the peer before 447 (the RFC leaves it to the server).
CONNECT_TIMEOUT_S = 30.0

CONNECTING = "connecting"
WAITING = "waiting"
BOUND = "bound"
CLOSED = "closed"


class PeerLink(Protocol):
    """One side of a relayed TCP connection, as the shell holds it (a peer or a client data connection)."""

    def write(self, data: bytes) -> object: ...

    def close(self) -> None:
        """Close now (a connect in progress is abandoned); the shell then reports the loss once."""

    def pause(self) -> None:
        """Stop reading (flow control)."""

    def resume(self) -> None:
        """Read again."""


class TcpConnection:
    """One peer TCP connection of a TCP allocation and, once bound, its client data connection.

    :ivar id: the CONNECTION-ID (a random 32-bit number, unique among the live ones).
    :ivar peer: the peer's transport address.
    :ivar state: ``connecting`` → ``waiting`` → ``bound``, or ``closed`` from any of them.
    :ivar link: the peer side (None while a Connect is still looking for it).
    :ivar client: the client data connection (once bound).
    :ivar data_tuple: the client data connection's 5-tuple (once bound).
    :ivar answer: answers the pending Connect: ``answer(ok)`` (outgoing connections only).
    """

    __slots__ = ("id", "allocation", "peer", "state", "link", "client", "data_tuple", "answer", "held",
                 "held_bytes", "paused", "outgoing")

    def __init__(self, connection_id: int, allocation: Allocation, peer: Address, state: str,
                 outgoing: bool) -> None:
        self.id = connection_id
        self.allocation = allocation
        self.peer = peer
        self.state = state
        self.outgoing = outgoing
        self.link: PeerLink | None = None
        self.client: PeerLink | None = None
        self.data_tuple: FiveTuple | None = None
        self.answer: Callable[[bool], None] | None = None
        #: what the peer sent before the bind (bytes objects, in order), and how much
        self.held: list[bytes] = []
        self.held_bytes = 0
        #: whether the peer side was paused because ``held`` is full
        self.paused = False

    def __repr__(self) -> str:
        return f"<TcpConnection {self.id:#010x} {self.state} peer={self.peer}>"

    def hold(self, data: bytes, limit: int) -> bool:
        """Keep what the peer sent before the bind; True when ``limit`` is reached (the shell pauses reading)."""
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes >= limit and not self.paused:
            self.paused = True
            return True
        return False

    def release_held(self) -> bytes:
        """Everything held, once (for the client data connection, before any later byte)."""
        data = b"".join(self.held)
        self.held = []
        self.held_bytes = 0
        return data

    def relayed(self, n: int, to_peer: bool, now: float) -> float:
        """Count ``n`` bytes through the pipe; the pause (seconds) the ``max_bps`` budget asks of the sender.

        Bytes on a TCP pipe are never dropped: an allocation over its budget
        has the sending side paused until the debt is paid off.
        """
        allocation = self.allocation
        counters = allocation.counters
        if to_peer:
            counters.packets_to_peer += 1
            counters.bytes_to_peer += n
            allocation.bytes_to_peer += n
            bucket = allocation.bucket_to_peer
        else:
            counters.packets_to_client += 1
            counters.bytes_to_client += n
            allocation.bytes_to_client += n
            bucket = allocation.bucket_to_client
        if bucket is None:
            return 0.0
        return bucket.charge(n * 8, now)


def describe(connection: TcpConnection) -> dict[str, Any]:
    """What the sessions admin shows of one connection."""
    return {"id": connection.id, "peer": format_address(connection.peer),
            "state": connection.state, "direction": "connect" if connection.outgoing else "accept"}
