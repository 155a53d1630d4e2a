# -*- test-case-name: tests.turn.test_engine -*-
"""Allocation state (RFC 8656 §2.2, §9, §12), the peer-side fast path, and the one way data leaves a relay.

Rules:

* An :class:`Allocation` is named by its client 5-tuple and owns one relay
  socket per address family (two for a dual allocation, RFC 8656 §7.2).
* ``permissions`` maps a peer IP (normalised text) to its expiry; a peer IP
  with no entry gets nothing relayed in either direction (RFC 8656 §9).
* ``channels`` maps channel number → :class:`ChannelBinding` and
  ``bindings_by_peer`` is its reverse (peer transport address → binding):
  together they are the truth about channels, for the RFC 8656 §12.2 checks.
* ``channel_by_peer`` is the table the peer fast path reads.  It holds a
  peer's binding only while the binding exists *and* the peer's IP has a
  permission (RFC 8656 §11.3: the permission check comes first, the channel
  lookup second; channels outlive permissions, 600 s against 300 s).  The
  allocation manager adds and removes entries when either side changes, so a
  hit means "permitted, send ChannelData" with no second lookup.
* The allocation manager (manager.py) owns every change to these maps (bind,
  refresh, expiry); the shell only reads them.  Nothing here reads a clock:
  expiries are enforced by the manager's one timer heap, so a lookup hit is
  always a live entry.
* Client data for a peer, from any path (ChannelData and Send indications,
  fast or full), leaves through :meth:`Allocation.relay_to_peer`: the
  bandwidth bucket, the relay socket's ``sendto`` and the counters, once.

Theory of operation, peer side: the relay socket's ``doRead`` calls
:meth:`Allocation.handle_peer_datagram`, which is at most two dict lookups, a
4-byte header and one ``send`` to the client (ChannelData if ``channel_by_peer``
has the peer, else a Data indication if its IP has a permission, else a drop;
RFC 8656 §11.3 / §12.7).  No parsing, no effect objects, no logging.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Protocol

from webrtcstack.limits import TokenBucket
from webrtcstack.stun.attributes import unpack_address
from webrtcstack.stun.constants import MAGIC_COOKIE_BYTES
from webrtcstack.stun.errors import StunDecodeError
from webrtcstack.stun.message import data_indication, scan_send_indication, xor_peer_address_tlv
from webrtcstack.turn.five_tuple import Address, FiveTuple, format_address

__all__ = ["Allocation", "ChannelBinding", "Relay", "TurnCounters"]

_CHANNEL_HEADER = struct.Struct("!HH")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
#: The XOR key of an IPv4 XOR-PEER-ADDRESS is the magic cookie alone (RFC 8489 §14.2).
_IPV4_XOR_KEY = MAGIC_COOKIE_BYTES + bytes(12)


class Relay(Protocol):
    """A bound relay socket, provided by the shell.

    ``sendto(data, peer)`` sends one datagram (a socket's ``sendto``: it may
    raise :class:`OSError`, which the caller counts as ``send_error``);
    ``address`` is the bound ``(host, port)``.
    """

    address: Address
    #: Whose ``handle_peer_datagram`` gets what arrives (reassigned when a reserved port is claimed).
    allocation: Any

    def sendto(self, data: bytes, peer: Address) -> object: ...

    def close(self) -> None: ...


class TurnCounters:
    """Plain counters a metrics exporter can read (no exporter code here).

    The per-packet ones are attributes (cheapest to bump); the rest are dicts
    keyed by a short label.
    """

    def __init__(self) -> None:
        self.packets_to_peer = 0
        self.bytes_to_peer = 0
        self.packets_to_client = 0
        self.bytes_to_client = 0
        #: RFC 6062 peer TCP connections alive now, and their events (connected, accepted, bound, ...)
        self.tcp_connections_active = 0
        self.tcp_connections: dict[str, int] = {}
        #: the part of the four above that the kernel offload forwarded (turn/offload/routes.py)
        self.offload_packets_to_peer = 0
        self.offload_bytes_to_peer = 0
        self.offload_packets_to_client = 0
        self.offload_bytes_to_client = 0
        #: channels the kernel forwards now; those refused because its maps were full
        self.offload_channels = 0
        self.offload_refused = 0
        #: TURN over DTLS, by event (cookie_sent, handshakes, closed, idle, fatal, ...)
        self.dtls: dict[str, int] = {}
        #: users and REST secrets loaded from [turn] users_db
        self.users_db_users = 0
        self.users_db_secrets = 0
        self.allocations_active: dict[tuple[str, str], int] = {}
        self.allocations_total: dict[tuple[str, str], int] = {}
        self.permissions_active = 0
        self.channels_active = 0
        self.requests: dict[tuple[str, str], int] = {}
        self.auth_failures: dict[str, int] = {}
        self.peers_denied = 0
        self.quota_hits: dict[str, int] = {}
        self.dropped: dict[str, int] = {}

    def drop(self, reason: str) -> None:
        """Count one dropped packet."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def tcp_event(self, event: str) -> None:
        """Count one RFC 6062 connection event (the ``event`` label of ``turn_tcp_relay_events``)."""
        self.tcp_connections[event] = self.tcp_connections.get(event, 0) + 1

    def quota_hit(self, kind: str) -> None:
        """Count one refusal by the ``kind`` quota (the ``quota`` label of ``turn_quota_hits``)."""
        self.quota_hits[kind] = self.quota_hits.get(kind, 0) + 1

    def relayed(self) -> dict[str, dict[str, int]]:
        """Relayed packets and bytes by direction."""
        return {
            "packets": {"to_peer": self.packets_to_peer, "to_client": self.packets_to_client},
            "bytes": {"to_peer": self.bytes_to_peer, "to_client": self.bytes_to_client},
        }


def _not_by_datagram(data: bytes, now: float) -> bool:
    """A TCP allocation's Send indication: not for the fast path (see :meth:`Allocation.make_tcp`)."""
    return False


class ChannelBinding:
    """A channel number bound to one peer transport address (RFC 8656 §12)."""

    __slots__ = ("number", "peer", "expires_at")

    def __init__(self, number: int, peer: Address, expires_at: float) -> None:
        self.number = number
        self.peer = peer
        self.expires_at = expires_at


class Allocation:
    """One allocation: relays, permissions, channels, lifetime, and its client.

    :param to_client: sends bytes to the client over the allocation's 5-tuple.
    """

    # What few allocations use is a class-level default, set on the instance
    # only when used: CPython 3.11 keeps an instance's attributes in a table
    # shared by the class's instances only up to about 30 names, and past
    # that the attribute reads on the relay's per-packet paths cost more
    # (callgrind, bench/turn_micro.py: 7,660 instructions per UDP ChannelData
    # with 30 instance attributes, 7,344 with 26).  Keep __init__ short.
    #: RFC 6062: a TCP allocation (its relay listens for TCP), and its peer connections by peer address
    tcp = False
    tcp_connections: dict[Address, Any] = MappingProxyType({})  # type: ignore[assignment]  # read-only until make_tcp
    #: RFC 8016: whether the client asked for mobility, and the generation of the newest ticket issued
    mobile = False
    ticket_generation = 0

    def __init__(self, five_tuple: FiveTuple, username: str, key: bytes, sha256: bool,
                 to_client: Callable[[bytes], Any], counters: TurnCounters, expires_at: float) -> None:
        self.five_tuple = five_tuple
        self.username = username
        self.key = key
        self.sha256 = sha256
        self.to_client = to_client
        self.stream = five_tuple.transport.is_stream
        self.counters = counters
        self.expires_at = expires_at
        self.relays: dict[int, Relay] = {}
        self.relay_ports: dict[int, int] = {}
        self.relayed_addresses: dict[int, Address] = {}
        self.permissions: dict[str, float] = {}
        self.channels: dict[int, ChannelBinding] = {}
        #: Every live binding by peer transport address (the truth; see the module docstring).
        self.bindings_by_peer: dict[Address, ChannelBinding] = {}
        #: The peer fast-path table: live bindings whose peer IP also has a permission.
        self.channel_by_peer: dict[Address, ChannelBinding] = {}
        self.bucket_to_peer: TokenBucket | None = None
        self.bucket_to_client: TokenBucket | None = None
        self.closed = False
        #: what the sessions admin lists: a short id, when it was made, bytes relayed each way
        self.id = ""
        self.created_at = 0.0
        self.bytes_to_peer = 0
        self.bytes_to_client = 0
        #: ("ipv4" | "ipv6" | "dual", transport name), for the counters.
        self.label: tuple[str, str] = ("", "")
        # Per-allocation transaction ID for Data indications (a debugging aid
        # only, RFC 8489 §6), and pre-encoded XOR-PEER-ADDRESS attributes.
        # Made on the first Data indication (most allocations relay ChannelData only),
        # which saves a getrandom call per Allocate.
        self._indication_id = b""
        self._peer_attrs: dict[Address, bytes] = {}
        # XOR-PEER-ADDRESS values of Send indications already decoded (IPv4 only:
        # their XOR key is the magic cookie alone, so the bytes name the peer).
        self._send_peers: dict[bytes, Address] = {}

    def make_tcp(self) -> None:
        """Mark an RFC 6062 TCP allocation: it relays over TCP connections, never datagrams.

        Its Send indications leave the fast path (which calls this
        instance's ``handle_send_indication``, now always False) for the full
        path, which drops them as ``tcp_allocation``: UDP allocations pay
        nothing for the check.
        """
        self.tcp = True
        self.tcp_connections = {}
        self.handle_send_indication = _not_by_datagram  # type: ignore[method-assign]

    def describe(self, now: float) -> dict[str, Any]:
        """What the sessions admin shows (coturn's ``ps``): who, from where, to whom, how much, how long."""
        transport, client, _ = self.five_tuple
        return {
            "id": self.id,
            "user": self.username,
            "transport": getattr(transport, "name", str(transport)).lower(),
            "client": format_address(client),
            "relayed": [format_address(a) for a in self.relayed_addresses.values()],
            "peers": sorted(self.permissions),
            "channels": len(self.channels),
            "bytes_to_peer": self.bytes_to_peer,
            "bytes_to_client": self.bytes_to_client,
            "age_s": round(now - self.created_at, 1),
            "expires_in_s": round(self.expires_at - now, 1),
        }

    def handle_peer_datagram(self, data: bytes, peer: Address, now: float) -> None:
        """Relay a datagram from ``peer`` to the client (the peer fast path).

        RFC 8656 §11.3 / §12.7: a datagram from an IP with no permission is
        dropped silently; a permitted one goes as ChannelData if a channel is
        bound to the peer, else as a Data indication.  The permission check is
        folded into ``channel_by_peer``: the engine keeps a binding there only
        while the peer's IP has a permission, so a hit needs no second lookup.
        """
        binding = self.channel_by_peer.get(peer)
        counters = self.counters
        if binding is None:
            if peer[0] not in self.permissions:
                counters.drop("no_permission")
                return
        bucket = self.bucket_to_client
        if bucket is not None and not bucket.take(len(data) * 8, now):
            counters.drop("bandwidth")
            return
        if binding is not None:
            n = len(data)
            if self.stream:
                out = _CHANNEL_HEADER.pack(binding.number, n) + data + _PAD[n & 3]
            else:
                out = _CHANNEL_HEADER.pack(binding.number, n) + data
        else:
            attr = self._peer_attrs.get(peer)
            if attr is None:
                if not self._indication_id:
                    self._indication_id = os.urandom(12)
                if len(self._peer_attrs) > 256:
                    self._peer_attrs.clear()
                attr = self._peer_attrs[peer] = xor_peer_address_tlv(peer, self._indication_id)
            out = data_indication(attr, self._indication_id, data)
        self.to_client(out)
        counters.packets_to_client += 1
        counters.bytes_to_client += len(data)
        self.bytes_to_client += len(data)

    def handle_send_indication(self, data: bytes, now: float) -> bool:
        """The fast path for a Send indication to an IPv4 peer (RFC 8656 §11.2).

        The codec's :func:`scan_send_indication` reads it; False (the caller
        then takes the full path) for anything unusual: an IPv6 peer, other
        attributes, a FINGERPRINT that does not match, a peer without a permission.
        """
        scanned = scan_send_indication(data)
        if scanned is None:
            return False
        peer_value, payload = scanned
        peer = self._send_peers.get(peer_value)
        if peer is None:
            if len(peer_value) != 8:
                return False  # IPv6: the XOR key has the transaction ID in it, nothing to cache
            try:
                peer = unpack_address(peer_value, _IPV4_XOR_KEY)
            except StunDecodeError:
                return False
            if len(self._send_peers) > 256:
                self._send_peers.clear()
            self._send_peers[peer_value] = peer
        if peer[0] not in self.permissions:
            return False
        relay = self.relays.get(4)  # the cached peers are IPv4
        if relay is None:
            self.counters.drop("no_relay")
        else:
            self.relay_to_peer(payload, peer, relay, now)
        return True

    def send_to_peer(self, data: bytes, peer: Address, now: float) -> bool:
        """Send ``data`` to ``peer`` out of the relay of the peer's family (Send indications)."""
        relay = self.relays.get(6 if ":" in peer[0] else 4)
        if relay is None:
            self.counters.drop("no_relay")
            return False
        return self.relay_to_peer(data, peer, relay, now)

    def relay_to_peer(self, data: bytes, peer: Address, relay: Relay, now: float) -> bool:
        """The one way client data leaves a relay: the bandwidth bucket, the send, the counters.

        Both client fast paths (ChannelData, Send indications) and the full
        path end here, so they share one bucket and one set of counters.
        """
        bucket = self.bucket_to_peer
        if bucket is not None and not bucket.take(len(data) * 8, now):
            self.counters.drop("bandwidth")
            return False
        try:
            relay.sendto(data, peer)
        except OSError:  # a full buffer, or an ICMP error from an earlier datagram
            self.counters.drop("send_error")
            return False
        n = len(data)
        counters = self.counters
        counters.packets_to_peer += 1
        counters.bytes_to_peer += n
        self.bytes_to_peer += n
        return True
