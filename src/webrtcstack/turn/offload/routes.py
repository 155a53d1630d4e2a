# -*- test-case-name: tests.turn.test_offload_routes -*-
"""Which channels the kernel forwards, and what it forwarded (sans-IO; the maps are passed in).

The allocation manager calls :meth:`KernelRoutes.up` when a channel binding
enters the peer fast-path table (``Allocation.channel_by_peer``: bound *and*
its peer's IP has a permission, which the peer policy allowed) and
:meth:`KernelRoutes.down` when it leaves it (permission expiry, channel
expiry, deallocation, Refresh with lifetime 0, mobility's move, shutdown).
So the kernel holds an entry exactly while the Python fast path would relay
that channel with no further check.

Only what the kernel program can do exactly as the Python path does is
offloaded: a UDP client, IPv4 everywhere, concrete addresses (not a wildcard
listen or relay address), and no ``max_bps`` (a rate-limited allocation stays
in Python, where its token buckets are).  Anything else stays on the Python
path, unchanged.

The kernel counts packets and bytes per entry; :meth:`KernelRoutes.collect`
(called every second by the shell, and once more when an entry goes down)
adds what moved since the last look to the allocation's byte counts and to
the engine's counters, so ``/metrics``, the sessions admin and the byte
totals see the same figures with the offload on.

A map is any object with ``update(key, value)`` (raising on failure, e.g. a
full map), ``lookup(key) -> bytes | None`` and ``delete(key)``: the shell
passes :class:`webrtcstack.turn.adapters.bpf.BpfMap`, the tests a dict.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import Protocol

from webrtcstack.turn.allocation import Allocation, ChannelBinding, TurnCounters
from webrtcstack.turn.five_tuple import Transport

__all__ = ["KernelRoutes", "RouteMap", "c2p_entry", "p2c_entry", "COUNTS"]

#: above this many routes, :meth:`KernelRoutes.collect` reads each map whole, in batches
BATCH_ABOVE = 32
#: flags in an entry: the destination is an address of this host (XDP_PASS up the local stack)
DEST_LOCAL = 1
#: the packet and byte counters at the end of every value (native byte order, as the kernel writes them)
COUNTS = struct.Struct("=QQ")
_C2P_KEY = struct.Struct("!4s4sHHH2x")
_C2P_VALUE = struct.Struct("!4s4sHH")
_P2C_KEY = struct.Struct("!4s4sHH")
_P2C_VALUE = struct.Struct("!4s4sHHH")


class RouteMap(Protocol):
    def update(self, key: bytes, value: bytes) -> None: ...

    def lookup(self, key: bytes) -> bytes | None: ...

    def delete(self, key: bytes) -> bool: ...


def _v4(host: str) -> bytes | None:
    """The 4 bytes of a concrete IPv4 address, else None (IPv6, the wildcard, a name)."""
    try:
        packed = ipaddress.IPv4Address(host).packed
    except ValueError:
        return None
    return packed if packed != b"\0\0\0\0" else None


def c2p_entry(client: tuple[bytes, int], server: tuple[bytes, int], channel: int, relay: tuple[bytes, int],
              peer: tuple[bytes, int], flags: int) -> tuple[bytes, bytes]:
    """The client → peer key and value (turn_xdp.c ``struct c2p_key`` / ``c2p_value``)."""
    key = _C2P_KEY.pack(client[0], server[0], client[1], server[1], channel)
    value = _C2P_VALUE.pack(relay[0], peer[0], relay[1], peer[1]) + struct.pack("=I", flags) + COUNTS.pack(0, 0)
    return key, value


def p2c_entry(peer: tuple[bytes, int], relay: tuple[bytes, int], server: tuple[bytes, int],
              client: tuple[bytes, int], channel: int, flags: int) -> tuple[bytes, bytes]:
    """The peer → client key and value (turn_xdp.c ``struct p2c_key`` / ``p2c_value``)."""
    key = _P2C_KEY.pack(peer[0], relay[0], peer[1], relay[1])
    value = _P2C_VALUE.pack(server[0], client[0], server[1], client[1], channel) + struct.pack("=H", flags)
    return key, value + COUNTS.pack(0, 0)


def _moved(value: bytes | None, seen: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """From an entry's value: its (packets, bytes) now and what moved since ``seen``; None: nothing moved."""
    if value is None:
        return None
    now = COUNTS.unpack_from(value, len(value) - COUNTS.size)
    if now[0] == seen[0]:
        return None
    return (now[0], now[1]), (now[0] - seen[0], now[1] - seen[1])


class _Route:
    __slots__ = ("allocation", "number", "c2p_key", "p2c_key", "to_peer", "to_client")

    def __init__(self, allocation: Allocation, number: int, c2p_key: bytes, p2c_key: bytes) -> None:
        self.allocation = allocation
        self.number = number
        self.c2p_key = c2p_key
        self.p2c_key = p2c_key
        #: (packets, bytes) already credited, each direction
        self.to_peer = (0, 0)
        self.to_client = (0, 0)


class KernelRoutes:
    """The kernel's channel table, kept equal to the Python fast path's eligible entries.

    :param is_local: whether an IPv4 address (text) is one of this host's
        (the kernel then hands the rewritten datagram to the local stack).
    """

    def __init__(self, c2p: RouteMap, p2c: RouteMap, counters: TurnCounters,
                 is_local: Callable[[str], bool]) -> None:
        self.c2p = c2p
        self.p2c = p2c
        self.counters = counters
        self.is_local = is_local
        self.routes: dict[tuple[int, int], _Route] = {}

    @staticmethod
    def eligible(allocation: Allocation, binding: ChannelBinding) -> bool:
        """Whether the kernel program can carry this channel exactly as the Python path would."""
        transport, client, server = allocation.five_tuple
        relay = allocation.relays.get(4)
        return (transport == Transport.UDP and allocation.bucket_to_peer is None and relay is not None
                and None not in (_v4(client[0]), _v4(server[0]), _v4(relay.address[0]), _v4(binding.peer[0])))

    def up(self, allocation: Allocation, binding: ChannelBinding) -> None:
        """The binding is in the peer fast-path table: put it in the kernel's (idempotent)."""
        ident = (id(allocation), binding.number)
        if ident in self.routes or not self.eligible(allocation, binding):
            return
        _, (client_host, client_port), (server_host, server_port) = allocation.five_tuple
        relay_host, relay_port = allocation.relays[4].address
        peer_host, peer_port = binding.peer
        client = (_v4(client_host), client_port)
        server = (_v4(server_host), server_port)
        relay = (_v4(relay_host), relay_port)
        peer = (_v4(peer_host), peer_port)
        c2p_key, c2p_value = c2p_entry(client, server, binding.number, relay, peer,  # type: ignore[arg-type]
                                       DEST_LOCAL if self.is_local(peer_host) else 0)
        p2c_key, p2c_value = p2c_entry(peer, relay, server, client, binding.number,  # type: ignore[arg-type]
                                       DEST_LOCAL if self.is_local(client_host) else 0)
        try:
            self.c2p.update(c2p_key, c2p_value)
        except OSError:  # full: the channel stays on the Python path
            self.counters.offload_refused += 1
            return
        try:
            self.p2c.update(p2c_key, p2c_value)
        except OSError:
            self.c2p.delete(c2p_key)
            self.counters.offload_refused += 1
            return
        self.routes[ident] = _Route(allocation, binding.number, c2p_key, p2c_key)
        self.counters.offload_channels = len(self.routes)

    def down(self, allocation: Allocation, binding: ChannelBinding) -> None:
        """The binding left the peer fast-path table: stop forwarding it now, and credit its last counts."""
        route = self.routes.get((id(allocation), binding.number))
        if route is not None:
            self._take_down(route)
            self.counters.offload_channels = len(self.routes)

    def _take_down(self, route: _Route) -> None:
        """Credit a route's last counts and delete its two entries."""
        del self.routes[(id(route.allocation), route.number)]
        self._collect(route)
        self.c2p.delete(route.c2p_key)
        self.p2c.delete(route.p2c_key)

    def collect(self) -> None:
        """Credit what the kernel forwarded since the last look (the shell calls this every second).

        With many routes, each map is read whole in batches (a map with ``items()``) rather than
        entry by entry; a map without it (or a kernel without batch lookups) is read entry by entry.
        """
        c2p_all = p2c_all = None
        if len(self.routes) > BATCH_ABOVE:
            try:
                c2p_all, p2c_all = self.c2p.items(), self.p2c.items()  # type: ignore[attr-defined]
            except (AttributeError, OSError):
                c2p_all = p2c_all = None
        for route in self.routes.values():
            self._collect(route, c2p_all, p2c_all)

    def _collect(self, route: _Route, c2p_all: dict[bytes, bytes] | None = None,
                 p2c_all: dict[bytes, bytes] | None = None) -> None:
        counters = self.counters
        value = c2p_all.get(route.c2p_key) if c2p_all is not None else self.c2p.lookup(route.c2p_key)
        moved = _moved(value, route.to_peer)
        if moved is not None:
            route.to_peer, (dp, db) = moved
            counters.packets_to_peer += dp
            counters.bytes_to_peer += db
            counters.offload_packets_to_peer += dp
            counters.offload_bytes_to_peer += db
            route.allocation.bytes_to_peer += db
        value = p2c_all.get(route.p2c_key) if p2c_all is not None else self.p2c.lookup(route.p2c_key)
        moved = _moved(value, route.to_client)
        if moved is not None:
            route.to_client, (dp, db) = moved
            counters.packets_to_client += dp
            counters.bytes_to_client += db
            counters.offload_packets_to_client += dp
            counters.offload_bytes_to_client += db
            route.allocation.bytes_to_client += db

    def close(self) -> None:
        """Take every route down (at stop), crediting the last counts."""
        for route in list(self.routes.values()):
            self._take_down(route)
        self.counters.offload_channels = 0


def local_checker(addresses: set[str]) -> Callable[[str], bool]:
    """``is_local`` for :class:`KernelRoutes`: 127.0.0.0/8, or one of ``addresses`` (the shell reads them)."""
    def is_local(host: str) -> bool:
        return host in addresses or ipaddress.ip_address(host).is_loopback

    return is_local

