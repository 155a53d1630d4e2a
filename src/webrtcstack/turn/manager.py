# -*- test-case-name: tests.turn.test_engine -*-
"""The allocation manager: every allocation, the relay ports, reservations and the one timer heap.

The method handlers (``turn/methods/``) decide *whether* something happens,
as the RFC's steps; this module is *how* it happens, so that the tables stay
consistent whichever handler, timer or operator changed them.

Rules:

* The manager owns ``allocations`` (client 5-tuple → :class:`Allocation`),
  the allocations per user (the quotas), one :class:`PortPool` per address
  family, the EVEN-PORT reservations and the fast-path tables
  (:class:`FastPath`).  Nothing else writes to them.
* Every expiry (allocation, permission, channel, reservation) sits in one
  heap as ``(at, seq, expire, owner, item)``: ``expire`` is the method that
  checks the entry is still due and acts.  Refreshing pushes a new entry and
  leaves the old one, which is skipped when popped, so a refresh is O(log n)
  and nothing is ever scanned.
* Ports go back to the pool on every path that ends an allocation: expiry,
  Refresh with lifetime 0, connection loss, an operator's end, a failed
  Allocate, and the expiry of an unclaimed reservation.
* ``channel_by_peer`` (the peer fast path) holds a binding only while its
  peer's IP has a permission (RFC 8656 §11.3): it changes on ChannelBind,
  CreatePermission, permission expiry and channel expiry.
"""

from __future__ import annotations

import heapq
import os
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from webrtcstack.limits import TokenBucket
from webrtcstack.turn.allocation import Allocation, ChannelBinding, Relay, TurnCounters
from webrtcstack.turn.fastpath import FastPath
from webrtcstack.turn.five_tuple import Address, FiveTuple, Transport
from webrtcstack.turn.ports import PortPool
from webrtcstack.turn.tcp_relay import (
    BOUND, CLOSED, CONNECT_TIMEOUT_S, CONNECTING, CONNECTION_BIND_TIMEOUT_S, WAITING, PeerLink, TcpConnection,
)

__all__ = ["AllocationManager", "RelayOpener", "Reservation", "RESERVATION_LIFETIME_S"]

#: RFC 8656 §7.2: a port reserved with EVEN-PORT R=1 is held about 30 s.
RESERVATION_LIFETIME_S = 30.0
_FAMILY_NAME = {4: "ipv4", 6: "ipv6"}
_TRANSPORT_NAME = {t: t.name.lower() for t in Transport}


class RelayOpener(Protocol):
    """Opens relay sockets (the shell implements this with real sockets)."""

    def open_relay(self, host: str, port: int, allocation: Any, dont_fragment: bool) -> Relay | None:
        """Bind ``host:port`` for ``allocation`` (an :class:`Allocation` or a :class:`Reservation`);
        None if the port is in use."""

    def open_tcp_relay(self, host: str, port: int, allocation: Any) -> Relay | None:
        """RFC 6062: listen for TCP on ``host:port`` for ``allocation``; None if the port is in use."""

    def connect_tcp(self, relay: Relay, peer: Address, connection: TcpConnection) -> PeerLink | None:
        """RFC 6062: connect from ``relay``'s address to ``peer`` for ``connection``; the shell then
        calls the engine's ``tcp_connect_result`` once.  None: refused at once (no call follows)."""


class Reservation:
    """A port held for a later Allocate with RESERVATION-TOKEN; its socket is bound already.

    Binding at once matters: a port only marked as taken in our pool could be
    given to another process before the client comes back for it.  Until it
    is claimed, datagrams arriving on it are dropped.
    """

    __slots__ = ("token", "family", "port", "expires_at", "relay", "counters")

    def __init__(self, token: bytes, family: int, port: int, expires_at: float, counters: TurnCounters) -> None:
        self.token = token
        self.family = family
        self.port = port
        self.expires_at = expires_at
        self.relay: Relay | None = None
        self.counters = counters

    def handle_peer_datagram(self, data: bytes, peer: Address, now: float) -> None:
        """Nobody owns the port yet: drop."""
        self.counters.drop("reserved_port")


#: What a heap entry calls when popped: ``expire(manager, owner, item, now)``.
_Expire = Callable[["AllocationManager", Any, Any, float], None]


class AllocationManager:
    """Allocations, ports, reservations and their expiries.

    :param relay_hosts: family → address relay sockets bind to.
    :param relay_ports: the ``(low, high)`` port range.
    :param relay_opener: binds relay sockets.
    :param counters: the engine's counters (gauges kept here).
    :param randbelow: draws relay ports (see :mod:`webrtcstack.turn.ports`).
    """

    def __init__(self, relay_hosts: dict[int, str], relay_ports: tuple[int, int], relay_opener: RelayOpener,
                 counters: TurnCounters, randbelow: Callable[[int], int] | None = None) -> None:
        self.relay_hosts = dict(relay_hosts)
        self.relay_opener = relay_opener
        self.counters = counters
        low, high = relay_ports
        self.pools: dict[int, PortPool] = {family: PortPool(low, high, randbelow) for family in relay_hosts}
        self.allocations: dict[FiveTuple, Allocation] = {}
        self.by_user: dict[str, int] = {}
        self.reservations: dict[bytes, Reservation] = {}
        #: RFC 6062: every peer TCP connection by CONNECTION-ID, and the bound ones by client data 5-tuple
        self.tcp: dict[int, TcpConnection] = {}
        self.tcp_data: dict[FiveTuple, TcpConnection] = {}
        self.fast = FastPath(self.allocations, counters)
        self._heap: list[tuple[float, int, _Expire, Any, Any]] = []
        self._seq = 0
        self._made = 0
        #: allocations by id (``a1``, ``a2``, ...): the operator's end and mobility tickets name them
        self._by_id: dict[str, Allocation] = {}
        #: the kernel offload's table (:class:`webrtcstack.turn.offload.routes.KernelRoutes`), told each
        #: time a binding enters or leaves ``channel_by_peer``; None: no offload
        self.routes: Any = None

    # -- queries ------------------------------------------------------------

    def get(self, five_tuple: Any) -> Allocation | None:
        """The allocation of ``five_tuple``, if any."""
        return self.allocations.get(five_tuple)

    def user_count(self, username: str) -> int:
        """Allocations ``username`` holds here."""
        return self.by_user.get(username, 0)

    def find(self, allocation_id: str) -> Allocation | None:
        """The allocation with this id (``a1``, ``a2``, ...), if alive."""
        return self._by_id.get(allocation_id)

    def ports_free(self) -> bool:
        """Whether every family still has a free relay port."""
        return all(pool.free_count() for pool in self.pools.values())

    def next_deadline(self) -> float | None:
        """When the earliest expiry is due (None: nothing scheduled)."""
        return self._heap[0][0] if self._heap else None

    # -- allocations --------------------------------------------------------

    def new(self, five_tuple: FiveTuple, username: str, key: bytes, sha256: bool,
            to_client: Callable[[bytes], Any], lifetime_s: float, now: float) -> Allocation:
        """An allocation with no relay yet, not registered (see :meth:`add`)."""
        allocation = Allocation(five_tuple, username, key, sha256, to_client, self.counters, now + lifetime_s)
        allocation.created_at = now
        return allocation

    def attach(self, allocation: Allocation, family: int, port: int, relay: Relay, advertised_host: str) -> None:
        """Give ``allocation`` its relayed transport address for ``family``."""
        allocation.relays[family] = relay
        allocation.relay_ports[family] = port
        allocation.relayed_addresses[family] = (advertised_host, port)

    def add(self, allocation: Allocation, max_bps: int, now: float) -> None:
        """Register a new allocation that has its relays: its id, tables, quotas, counters, expiry."""
        self._made += 1
        allocation.id = f"a{self._made}"
        self._by_id[allocation.id] = allocation
        if max_bps:
            allocation.bucket_to_peer = TokenBucket(max_bps, max_bps, now)
            allocation.bucket_to_client = TokenBucket(max_bps, max_bps, now)
        self.allocations[allocation.five_tuple] = allocation
        self.by_user[allocation.username] = self.by_user.get(allocation.username, 0) + 1
        families = allocation.relays
        label = (_FAMILY_NAME[next(iter(families))] if len(families) == 1 else "dual",
                 _TRANSPORT_NAME[allocation.five_tuple.transport])
        allocation.label = label
        active, total = self.counters.allocations_active, self.counters.allocations_total
        active[label] = active.get(label, 0) + 1
        total[label] = total.get(label, 0) + 1
        self._schedule(allocation.expires_at, AllocationManager._expire_allocation, allocation)

    def refresh(self, allocation: Allocation, lifetime_s: float, now: float) -> None:
        """A new expiry for ``allocation`` (RFC 8656 §7.3)."""
        allocation.expires_at = now + lifetime_s
        self._schedule(allocation.expires_at, AllocationManager._expire_allocation, allocation)

    def move(self, allocation: Allocation, five_tuple: FiveTuple, to_client: Callable[[bytes], Any]) -> None:
        """Give ``allocation`` a new client 5-tuple (RFC 8016 mobility): the old one is forgotten at once.

        The allocation keeps its relays, permissions and channels; the fast-path
        table is re-keyed, and replies and peer data go to the new address.
        """
        old = allocation.five_tuple
        routes = self.routes
        if routes is not None:
            for binding in allocation.channel_by_peer.values():
                routes.down(allocation, binding)
        self.allocations.pop(old, None)
        self.allocations[five_tuple] = allocation
        allocation.five_tuple = five_tuple
        allocation.to_client = to_client
        channels = self.fast.channels
        for number in allocation.channels:
            route = channels.pop((old, number), None)
            if route is not None:
                channels[(five_tuple, number)] = route
        if routes is not None:
            for binding in allocation.channel_by_peer.values():
                routes.up(allocation, binding)

    def delete(self, allocation: Allocation) -> None:
        """End an allocation: tables, relays, ports, quotas, counters (idempotent)."""
        if allocation.closed:
            return
        allocation.closed = True
        for connection in list(allocation.tcp_connections.values()):
            self.tcp_close(connection)
        for binding in list(allocation.channels.values()):
            self._remove_channel(allocation, binding)
        self.counters.permissions_active -= len(allocation.permissions)
        allocation.permissions.clear()
        self.release_relays(allocation)
        self.allocations.pop(allocation.five_tuple, None)
        self._by_id.pop(allocation.id, None)
        count = self.by_user.get(allocation.username, 0) - 1
        if count > 0:
            self.by_user[allocation.username] = count
        else:
            self.by_user.pop(allocation.username, None)
        if allocation.label in self.counters.allocations_active:
            self.counters.allocations_active[allocation.label] -= 1

    def release_relays(self, allocation: Allocation) -> None:
        """Close the relays of ``allocation`` and return their ports (also for a failed Allocate)."""
        for family, relay in allocation.relays.items():
            relay.close()
            self.pools[family].release(allocation.relay_ports[family])
        allocation.relays.clear()
        allocation.relay_ports.clear()

    # -- relay ports --------------------------------------------------------

    def open_any(self, allocation: Allocation, family: int, dont_fragment: bool,
                 tries: int = 8, tcp: bool = False) -> tuple[int, Relay] | None:
        """A random free port that binds (a TCP listener with ``tcp``, RFC 6062); ports that fail
        to bind go back to the pool."""
        pool = self.pools[family]
        failed = []
        opener = self.relay_opener
        try:
            for _ in range(tries):
                port = pool.take()
                if port is None:
                    return None
                if tcp:
                    relay = opener.open_tcp_relay(self.relay_hosts[family], port, allocation)
                else:
                    relay = opener.open_relay(self.relay_hosts[family], port, allocation, dont_fragment)
                if relay is not None:
                    return port, relay
                failed.append(port)
            return None
        finally:
            for port in failed:
                pool.release(port)

    def open_even(self, allocation: Allocation, family: int, reserve: bool, dont_fragment: bool,
                  now: float) -> tuple[int, Relay, bytes | None] | None:
        """RFC 8656 §7.2 EVEN-PORT: an even port, and with R set, the next one held under a new token."""
        pool = self.pools[family]
        host = self.relay_hosts[family]
        for _ in range(8):
            port = pool.take_even_pair()
            if port is None:
                return None
            relay = self.relay_opener.open_relay(host, port, allocation, dont_fragment)
            if relay is None:
                pool.release(port)
                pool.release(port + 1)
                continue
            if not reserve:
                pool.release(port + 1)
                return port, relay, None
            token = os.urandom(8)
            reservation = Reservation(token, family, port + 1, now + RESERVATION_LIFETIME_S, self.counters)
            reservation.relay = self.relay_opener.open_relay(host, port + 1, reservation, dont_fragment)
            if reservation.relay is None:
                relay.close()
                pool.release(port)
                pool.release(port + 1)
                continue
            self.reservations[token] = reservation
            self._schedule(reservation.expires_at, AllocationManager._expire_reservation, None, token)
            return port, relay, token
        return None

    def claim(self, token: bytes, allocation: Allocation) -> Reservation | None:
        """Take the reservation named by RESERVATION-TOKEN for ``allocation`` (its relay now feeds it)."""
        reservation = self.reservations.pop(token, None)
        if reservation is not None and reservation.relay is not None:
            reservation.relay.allocation = allocation
        return reservation

    def _free_reservation(self, reservation: Reservation) -> None:
        if reservation.relay is not None:
            reservation.relay.close()
            reservation.relay = None
        self.pools[reservation.family].release(reservation.port)

    # -- permissions and channels -------------------------------------------

    def install_permission(self, allocation: Allocation, host: str, lifetime_s: float, now: float) -> None:
        """Create or refresh the permission for ``host`` (RFC 8656 §9).

        A new permission also puts the channels already bound to peers at
        ``host`` back in the peer fast-path table.
        """
        new = host not in allocation.permissions
        expires_at = now + lifetime_s
        allocation.permissions[host] = expires_at
        self._schedule(expires_at, AllocationManager._expire_permission, allocation, host)
        if new:
            self.counters.permissions_active += 1
            self._sync_peer_routes(allocation, host)

    def bind_channel(self, allocation: Allocation, number: int, peer: Address, lifetime_s: float,
                     now: float) -> None:
        """Bind ``number`` to ``peer`` or refresh that binding (RFC 8656 §12.2 step 3).

        The caller has checked the RFC's conditions and installed the peer's
        permission; the binding goes into both fast-path tables.
        """
        expires_at = now + lifetime_s
        binding = allocation.channels.get(number)
        if binding is None:
            binding = ChannelBinding(number, peer, expires_at)
            allocation.channels[number] = binding
            allocation.bindings_by_peer[peer] = binding
            relay = allocation.relays[6 if ":" in peer[0] else 4]
            self.fast.channels[(allocation.five_tuple, number)] = (allocation, peer, relay)
            self.counters.channels_active += 1
        else:
            binding.expires_at = expires_at
        self._schedule(expires_at, AllocationManager._expire_channel, allocation, number)
        # The permission exists now, so the peer side may send ChannelData
        # (this also reinstates a binding whose permission had lapsed).
        allocation.channel_by_peer[peer] = binding
        if self.routes is not None:
            self.routes.up(allocation, binding)

    def _sync_peer_routes(self, allocation: Allocation, host: str) -> None:
        """Make ``channel_by_peer`` hold the bindings to peers at ``host`` iff ``host`` has a permission.

        Called when a permission appears or expires, never per packet; it
        walks the allocation's channels (at most ``max_channels``).
        """
        table = allocation.channel_by_peer
        permitted = host in allocation.permissions
        routes = self.routes
        for binding in allocation.channels.values():
            if binding.peer[0] == host:
                if permitted:
                    table[binding.peer] = binding
                    if routes is not None:
                        routes.up(allocation, binding)
                else:
                    table.pop(binding.peer, None)
                    if routes is not None:
                        routes.down(allocation, binding)

    def _remove_channel(self, allocation: Allocation, binding: ChannelBinding) -> None:
        if self.routes is not None:
            self.routes.down(allocation, binding)
        del allocation.channels[binding.number]
        allocation.bindings_by_peer.pop(binding.peer, None)
        allocation.channel_by_peer.pop(binding.peer, None)
        self.fast.channels.pop((allocation.five_tuple, binding.number), None)
        self.counters.channels_active -= 1

    # -- RFC 6062 TCP connections -------------------------------------------

    def tcp_open(self, allocation: Allocation, peer: Address, outgoing: bool, now: float) -> TcpConnection:
        """A new peer connection of ``allocation`` under a fresh CONNECTION-ID, with its timer.

        Outgoing (Connect) ones start ``connecting`` (:data:`CONNECT_TIMEOUT_S`), accepted ones
        ``waiting`` for their ConnectionBind (:data:`CONNECTION_BIND_TIMEOUT_S`).
        """
        tables = self.tcp
        while True:
            connection_id = secrets.randbits(32)
            if connection_id and connection_id not in tables:
                break
        state = CONNECTING if outgoing else WAITING
        connection = TcpConnection(connection_id, allocation, peer, state, outgoing)
        tables[connection_id] = connection
        allocation.tcp_connections[peer] = connection
        self.counters.tcp_connections_active += 1
        self._schedule(now + (CONNECT_TIMEOUT_S if outgoing else CONNECTION_BIND_TIMEOUT_S),
                       AllocationManager._expire_tcp, connection, state)
        return connection

    def tcp_connected(self, connection: TcpConnection, now: float) -> None:
        """A Connect's connection is up: it now waits for its ConnectionBind (§5.2)."""
        connection.state = WAITING
        self._schedule(now + CONNECTION_BIND_TIMEOUT_S, AllocationManager._expire_tcp, connection, WAITING)

    def tcp_bind(self, connection: TcpConnection, data_tuple: FiveTuple) -> None:
        """ConnectionBind succeeded on the connection ``data_tuple`` (§5.4)."""
        connection.state = BOUND
        connection.data_tuple = data_tuple
        self.tcp_data[data_tuple] = connection

    def tcp_close(self, connection: TcpConnection) -> None:
        """End a peer connection: out of every table, both sides closed (idempotent)."""
        if connection.state == CLOSED:
            return
        connection.state = CLOSED
        self.tcp.pop(connection.id, None)
        allocation = connection.allocation
        if allocation.tcp_connections.get(connection.peer) is connection:
            del allocation.tcp_connections[connection.peer]
        if connection.data_tuple is not None:
            self.tcp_data.pop(connection.data_tuple, None)
        connection.held = []
        self.counters.tcp_connections_active -= 1
        self.counters.tcp_event("closed")
        for link in (connection.link, connection.client):
            if link is not None:
                link.close()

    def _expire_tcp(self, connection: TcpConnection, state: str, now: float) -> None:
        if connection.state != state:
            return  # it moved on (connected, bound or closed) since this timer was set
        if state == CONNECTING:
            self.counters.tcp_event("connect_timeout")
            answer, connection.answer = connection.answer, None
            if answer is not None:
                answer(False)
        else:
            self.counters.tcp_event("bind_timeout")
        self.tcp_close(connection)

    # -- time ---------------------------------------------------------------

    def _schedule(self, at: float, expire: _Expire, owner: Any,
                  item: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, expire, owner, item))

    def expire(self, now: float) -> None:
        """Carry out every expiry that is due (stale entries are skipped)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, expire, owner, item = heapq.heappop(heap)
            expire(self, owner, item, now)

    def _expire_allocation(self, allocation: Allocation, _: Any, now: float) -> None:
        if not allocation.closed and allocation.expires_at <= now:
            self.delete(allocation)

    def _expire_permission(self, allocation: Allocation, host: str, now: float) -> None:
        expires_at = allocation.permissions.get(host)
        if not allocation.closed and expires_at is not None and expires_at <= now:
            del allocation.permissions[host]
            self.counters.permissions_active -= 1
            self._sync_peer_routes(allocation, host)

    def _expire_channel(self, allocation: Allocation, number: int, now: float) -> None:
        binding = allocation.channels.get(number)
        if not allocation.closed and binding is not None and binding.expires_at <= now:
            self._remove_channel(allocation, binding)

    def _expire_reservation(self, _: Any, token: bytes, now: float) -> None:
        reservation = self.reservations.get(token)
        if reservation is not None and reservation.expires_at <= now:
            del self.reservations[token]
            self._free_reservation(reservation)

    def close(self) -> None:
        """End every allocation and free every reservation (at stop)."""
        for allocation in list(self.allocations.values()):
            self.delete(allocation)
        for reservation in self.reservations.values():
            self._free_reservation(reservation)
        self.reservations.clear()
        self._heap.clear()
