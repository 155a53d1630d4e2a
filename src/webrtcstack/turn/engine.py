# -*- test-case-name: tests.turn.test_engine -*-
"""The TURN engine: one sans-IO controller behind every client transport.

Rules:

* Inputs are method calls that take ``now`` (seconds, float) last:
  :meth:`TurnEngine.handle_client_packet` (a datagram or a framed stream
  message from a client), :meth:`TurnEngine.handle_connection_lost` (a TCP/TLS
  client went away) and :meth:`TurnEngine.handle_timer`.  The shell re-arms
  one timer at :meth:`TurnEngine.next_deadline`.
* The reply to a request is the return value (bytes for the sender).  Relay
  sockets come from an injected :class:`RelayOpener`; the engine never touches
  a socket itself, it only stores the handles the opener gives back.
* **Fast path.** :attr:`TurnEngine.channel_routes` maps
  ``(five_tuple, channel_number)`` to ``(allocation, peer, relay)``; it is
  updated on ChannelBind and channel expiry only.  ChannelData from a client
  is one lookup in it and one ``send`` (RFC 8656 §12.6 asks the server for a
  bound channel, not for a permission).  Peer datagrams go to
  :meth:`Allocation.handle_peer_datagram`, which reads
  ``Allocation.channel_by_peer``: a binding is in it only while its peer's IP
  also has a permission (RFC 8656 §11.3), so it changes on ChannelBind,
  CreatePermission, permission expiry and channel expiry (see allocation.py).
* Every expiry (allocation, permission, channel, reservation, transaction
  cache entry) sits in one heap; stale heap entries are skipped when popped,
  so refreshes cost O(log n) and nothing is scanned.
* Ports go back to the pool on every path that ends an allocation: expiry,
  Refresh with lifetime 0, connection loss, a failed Allocate, and the expiry
  of an EVEN-PORT reservation.

Theory of operation (one request): decode → 420 for unknown
comprehension-required attributes → transaction cache → authenticate
(RFC 8489 §9.2.4: 401 / 400 / 438, rate limited, stateless) → handler (one
per method, written as the RFC's steps; a :class:`ProtocolViolation` becomes
an error response) → sign, cache, return.
"""

from __future__ import annotations

import binascii
import heapq
import hmac
import os
import struct
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attr

from webrtcstack.stun.attributes import encode_value, pack_address, unpack_address
from webrtcstack.stun.binding import BindingHandler
from webrtcstack.stun.constants import FINGERPRINT_XOR, MAGIC_COOKIE_BYTES, AttrType, ErrorCode, Method, MessageClass
from webrtcstack.stun.errors import ProtocolViolation, StunDecodeError
from webrtcstack.stun.integrity import verify_fingerprint, verify_integrity, verify_integrity_sha256
from webrtcstack.stun.message import Message, decode, message_type
from webrtcstack.turn.allocation import Allocation, ChannelBinding, Relay, TurnCounters
from webrtcstack.turn.auth import (
    FEATURE_PASSWORD_ALGORITHMS,
    FEATURE_USERNAME_ANONYMITY,
    CredentialStore,
    NonceManager,
    PasswordAlgorithm,
)
from webrtcstack.turn.five_tuple import Address, FiveTuple, Transport
from webrtcstack.limits import ReplyRateLimiter, TokenBucket
from webrtcstack.turn.policy import PeerPolicy
from webrtcstack.turn.ports import PortPool
from webrtcstack.turn.transactions import TransactionCache

__all__ = ["TurnEngine", "TurnSettings", "RelayOpener", "ProtocolViolation"]

_CHANNEL = struct.Struct("!HH")
_UDP = 17
_FAMILY_CODE = {1: 4, 2: 6}
_FAMILY_NAME = {4: "ipv4", 6: "ipv6"}
_TRANSPORT_NAME = {t: t.name.lower() for t in Transport}
_OUR_ALGORITHMS = (PasswordAlgorithm.MD5, PasswordAlgorithm.SHA256)
#: Our PASSWORD-ALGORITHMS value as sent, to compare with the client's echo byte for byte.
_PASSWORD_ALGORITHMS_VALUE = encode_value(AttrType.PASSWORD_ALGORITHMS, tuple((a, b"") for a in _OUR_ALGORITHMS), b"")
#: Comprehension-required attributes (RFC 8489 §14: below 0x8000) a request may carry without a 420.
KNOWN_REQUIRED = frozenset({
    AttrType.MAPPED_ADDRESS, AttrType.USERNAME, AttrType.MESSAGE_INTEGRITY, AttrType.ERROR_CODE,
    AttrType.UNKNOWN_ATTRIBUTES, AttrType.CHANNEL_NUMBER, AttrType.LIFETIME, AttrType.XOR_PEER_ADDRESS,
    AttrType.DATA, AttrType.REALM, AttrType.NONCE, AttrType.XOR_RELAYED_ADDRESS, AttrType.REQUESTED_ADDRESS_FAMILY,
    AttrType.EVEN_PORT, AttrType.REQUESTED_TRANSPORT, AttrType.DONT_FRAGMENT, AttrType.MESSAGE_INTEGRITY_SHA256,
    AttrType.PASSWORD_ALGORITHM, AttrType.USERHASH, AttrType.XOR_MAPPED_ADDRESS, AttrType.RESERVATION_TOKEN,
    AttrType.PRIORITY, AttrType.USE_CANDIDATE,
    AttrType.CHANGE_REQUEST,  # RFC 5780: harmless, ignored
    0x0010,  # BANDWIDTH (RFC 5766 draft era, sent by coturn's uclient -a): ignored
    AttrType.PADDING,  # RFC 5780: ignored
})
#: RFC 8656 §7.2: a reservation made with EVEN-PORT R=1 is held about 30 s.
RESERVATION_LIFETIME_S = 30.0
_METHOD_NAMES = {m.value: m.name.lower() for m in Method}
#: ERROR-CODE values (no reason phrase) by code, encoded once.
_ERROR_CODE_VALUES: dict[int, bytes] = {}


class Elsewhere(Protocol):
    """What the TURN engine asks about the other nodes (:class:`webrtcstack.cluster.turnview.TurnClusterView`)."""

    #: allocations on the other live nodes
    total: int

    def user_count(self, user: str) -> int:
        """Allocations ``user`` holds on the other nodes."""

    def alternate(self, transport: str, family: int) -> tuple[str, int] | None:
        """The address of a live node with room for ``transport`` ("udp"/"tcp") and IP ``family``, or None."""


class RelayOpener(Protocol):
    """Opens relay sockets (the shell implements this with real UDP sockets)."""

    def open_relay(self, host: str, port: int, allocation: Allocation, dont_fragment: bool) -> Relay | None:
        """Bind ``host:port`` for ``allocation``; None if the port is in use."""


def _host_map(value: Any) -> dict[int, str]:
    """A copy of a family → address mapping (so a settings object never shares one with its caller)."""
    return dict(value)


@attr.s(frozen=True, slots=True, kw_only=True, auto_attribs=True)
class TurnSettings:
    """What the engine needs from ``[turn]`` plus the addresses the shell worked out (frozen).

    Made once from the config (:meth:`from_section`); a reload or a worker's
    shard makes a new one with :func:`attr.evolve`, and
    :meth:`TurnEngine.reconfigure` swaps it in whole.

    :param relay_hosts: family → address relay sockets bind to.
    :param advertised_hosts: family → address written in XOR-RELAYED-ADDRESS (default: ``relay_hosts``).
    """

    realm: str = "webrtcstack"
    software: str = "webrtcstack"
    relay_hosts: dict[int, str] = attr.ib(factory=lambda: {4: "0.0.0.0", 6: "::"}, converter=_host_map)
    advertised_hosts: dict[int, str] = attr.ib(
        default=attr.Factory(lambda self: dict(self.relay_hosts), takes_self=True), converter=_host_map)
    relay_ports: tuple[int, int] = (49152, 65535)
    default_lifetime_s: int = 600
    max_lifetime_s: int = 3600
    permission_lifetime_s: int = 300
    channel_lifetime_s: int = 600
    nonce_lifetime_s: int = 600
    user_quota: int = 20
    total_quota: int = 10000
    max_permissions: int = 10
    max_channels: int = 64
    max_bps: int = 0
    unauthenticated_replies_per_second: int = 20
    #: RFC 8656 allows 0x4000-0x4FFF; RFC 5766 allowed up to 0x7FFE and coturn's clients use that.
    legacy_channel_numbers: bool = True
    rest_api_separator: str = ":"

    @property
    def max_channel_number(self) -> int:
        """The highest channel number accepted (see ``legacy_channel_numbers``)."""
        return 0x7FFE if self.legacy_channel_numbers else 0x4FFF

    @classmethod
    def from_section(cls, turn: Any, relay_hosts: dict[int, str], advertised_hosts: dict[int, str]) -> TurnSettings:
        """Build from a config ``TurnSection``."""
        return cls(
            realm=turn.realm, software=turn.software, relay_hosts=relay_hosts, advertised_hosts=advertised_hosts,
            relay_ports=turn.relay_ports, default_lifetime_s=turn.default_lifetime_s,
            max_lifetime_s=turn.max_lifetime_s, permission_lifetime_s=turn.permission_lifetime_s,
            channel_lifetime_s=turn.channel_lifetime_s, nonce_lifetime_s=turn.nonce_lifetime_s,
            user_quota=turn.user_quota, total_quota=turn.total_quota, max_permissions=turn.max_permissions,
            max_channels=turn.max_channels, max_bps=turn.max_bps,
            unauthenticated_replies_per_second=turn.unauthenticated_replies_per_second,
            legacy_channel_numbers=turn.legacy_channel_numbers, rest_api_separator=turn.rest_api_separator,
        )


class _Auth:
    """The outcome of a successful authentication."""

    __slots__ = ("username", "key", "sha256")

    def __init__(self, username: str, key: bytes, sha256: bool) -> None:
        self.username = username
        self.key = key
        self.sha256 = sha256


class _Reservation:
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


class TurnEngine:
    """STUN Binding and TURN for every client transport.

    :param settings: limits, lifetimes and addresses.
    :param credentials: the user and REST secret store.
    :param policy: the peer address policy.
    :param relay_opener: opens relay sockets.
    :param nonce_key: HMAC key for nonces (random per process by default).
    :param randbelow: draws relay ports (``secrets``, batched, by default; see :mod:`webrtcstack.turn.ports`).
    """

    def __init__(self, settings: TurnSettings, credentials: CredentialStore, policy: PeerPolicy,
                 relay_opener: RelayOpener, *, nonce_key: bytes | None = None,
                 randbelow: Callable[[int], int] | None = None) -> None:
        self.settings = settings
        self.credentials = credentials
        self.policy = policy
        self.relay_opener = relay_opener
        self.counters = TurnCounters()
        self.nonces = NonceManager(settings.nonce_lifetime_s,
                                   FEATURE_PASSWORD_ALGORITHMS | FEATURE_USERNAME_ANONYMITY, key=nonce_key)
        self.challenge_limiter = ReplyRateLimiter(settings.unauthenticated_replies_per_second)
        self.transactions = TransactionCache()
        low, high = settings.relay_ports
        self.port_pools: dict[int, PortPool] = {family: PortPool(low, high, randbelow)
                                                for family in settings.relay_hosts}
        self.allocations: dict[FiveTuple, Allocation] = {}
        #: The fast path: (five_tuple, channel number) -> (allocation, peer address, relay).
        self.channel_routes: dict[tuple[Any, int], tuple[Allocation, Address, Relay]] = {}
        self.reservations: dict[bytes, _Reservation] = {}
        self.user_allocations: dict[str, int] = {}
        self._heap: list[tuple[float, int, str, Any, Any]] = []
        self._seq = 0
        #: allocations made so far (their ids: a1, a2, ...)
        self._made = 0
        self._software = ((AttrType.SOFTWARE, settings.software.encode()),) if settings.software else ()
        self._realm_value = settings.realm.encode()
        #: STUN Binding on the TURN ports: the one Binding implementation (stun.binding)
        self.binding = BindingHandler(settings.software)
        #: Set by the shell when the process drains (SIGTERM): new allocations get 508.
        self.draining = False
        #: Called as ``(reason, client_host, now)`` on every authentication failure
        #: (after the counter is bumped); the shell logs it, rate limited per reason.
        self.auth_failure_listener: Callable[[str, str, float], None] | None = None
        #: The other nodes' allocations (``[redis]``; see :mod:`webrtcstack.cluster.turnview`):
        #: the quotas count them, and a node without room names one with 300 Try Alternate.
        self.elsewhere: Elsewhere | None = None

    # ------------------------------------------------------------------
    # Queries
    # ------------------------------------------------------------------

    def allocation_count(self) -> int:
        """Allocations alive now."""
        return len(self.allocations)

    def has_allocation(self, five_tuple: Any) -> bool:
        """Whether this 5-tuple holds an allocation (for the stream adapter's checks)."""
        return five_tuple in self.allocations

    def allocations_by_user(self) -> dict[str, int]:
        """Allocations alive per user, as a copy (the cluster report)."""
        return dict(self.user_allocations)

    def describe_allocations(self, now: float) -> list[dict[str, Any]]:
        """Every allocation alive, oldest first, as the sessions admin lists them."""
        return [a.describe(now) for a in sorted(self.allocations.values(), key=lambda a: a.created_at)]

    def handle_end(self, allocation_id: str, *, now: float) -> dict[str, Any] | None:
        """End one allocation at an operator's word (coturn's ``cs``): relays closed, quotas freed.

        :returns: what it was, or None when no allocation has that id.
        """
        for allocation in self.allocations.values():
            if allocation.id == allocation_id:
                described = allocation.describe(now)
                self._delete_allocation(allocation)
                return described
        return None

    def accepting(self) -> bool:
        """Whether an Allocate could get a relay here now (not draining, ports free in every family)."""
        return not self.draining and all(pool.free_count() for pool in self.port_pools.values())

    def reconfigure(self, settings: TurnSettings, users: Iterable[tuple[str, str]], secrets: Iterable[str],
                    policy: PeerPolicy) -> None:
        """Apply a reloaded config to new requests (SIGHUP; see webrtcstack.ops.lifecycle).

        Users, REST secrets, realm, REST username separator, nonce lifetime,
        peer policy, quotas, limits and lifetimes take effect at once;
        existing allocations keep their state.  Relay addresses and the relay
        port range stay as they are (those sockets exist already), and a
        drain in progress stays in progress.
        """
        settings = attr.evolve(settings, relay_hosts=self.settings.relay_hosts,
                               advertised_hosts=self.settings.advertised_hosts, relay_ports=self.settings.relay_ports)
        self.settings = settings
        # The realm first: set_users derives the USERHASH table from it.
        self.credentials.realm = settings.realm
        self.credentials.separator = settings.rest_api_separator
        self.credentials.secrets = tuple(secrets)
        self.credentials.set_users(users)
        self.policy = policy
        self.nonces.lifetime_s = settings.nonce_lifetime_s
        self.challenge_limiter = ReplyRateLimiter(settings.unauthenticated_replies_per_second)
        self._software = ((AttrType.SOFTWARE, settings.software.encode()),) if settings.software else ()
        self._realm_value = settings.realm.encode()
        if settings.software != self.binding.software:
            counters, self.binding = self.binding.counters, BindingHandler(settings.software)
            self.binding.counters = counters

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work (None: nothing scheduled)."""
        candidates = []
        if self._heap:
            candidates.append(self._heap[0][0])
        tx = self.transactions.next_deadline()
        if tx is not None:
            candidates.append(tx)
        return min(candidates) if candidates else None

    # ------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------

    def handle_client_packet(self, five_tuple: Any, data: bytes, to_client: Callable[[bytes], Any],
                             *, now: float) -> bytes | None:
        """Process one datagram or framed stream message from a client.

        Like :meth:`handle_client_message`, but bytes that are not STUN are
        dropped and counted (``dropped["malformed"]``) instead of raising.
        """
        try:
            return self.handle_client_message(five_tuple, data, to_client, now=now)
        except StunDecodeError:
            self.counters.drop("malformed")
            return None

    def handle_client_message(self, five_tuple: Any, data: bytes, to_client: Callable[[bytes], Any],
                              *, now: float) -> bytes | None:
        """Process one datagram or framed stream message from a client.

        ChannelData (first byte 0x40-0x7F) goes straight to the fast path;
        anything else is parsed as STUN.

        :param five_tuple: a :class:`FiveTuple` or the equal plain tuple.
        :param to_client: sends bytes back over this 5-tuple; kept by a new
            allocation for the peer fast path.
        :returns: bytes to send back to the client, if any.
        :raises StunDecodeError: the bytes are not a STUN message (nothing is
            counted: the shell drops a datagram or closes a stream, and counts).
        """
        if data and 0x40 <= data[0] < 0x80:
            self.handle_channel_data(five_tuple, data, now)
            return None
        if data[:2] == b"\x00\x01":
            # Binding requests (RFC 3489 ones too) go to the STUN Binding handler, the one implementation.
            return self.binding.handle(data, five_tuple[1], five_tuple[0].name.lower())
        # Values stay raw bytes: a malformed one gets 400 from its handler, not a silent drop.
        message = decode(data, typed=False)
        if message.classic:
            raise StunDecodeError("no magic cookie (RFC 3489 STUN is not TURN)")
        # The first value of each attribute type, looked up once per request instead of
        # walking ``message.attributes`` for every presence test (reversed: the first one wins).
        first: dict[int, Any] = dict(reversed(message.attributes))
        if AttrType.FINGERPRINT in first and not verify_fingerprint(data):
            raise StunDecodeError("FINGERPRINT does not match")
        if not isinstance(five_tuple, FiveTuple):
            five_tuple = FiveTuple(*five_tuple)
        cls = message.msg_class
        if cls == MessageClass.REQUEST:
            return self._handle_request(five_tuple, message, first, data, to_client, now)
        if cls == MessageClass.INDICATION and message.method == Method.SEND:
            self._handle_send(five_tuple, message, now)
        return None

    def handle_channel_data(self, five_tuple: Any, data: bytes, now: float) -> None:
        """Relay one ChannelData message from a client to its peer (RFC 8656 §12.4).

        The length field must fit inside ``data``; nothing past it is sent.
        """
        if len(data) < 4:
            self.counters.drop("malformed")
            return
        number, length = _CHANNEL.unpack_from(data)
        route = self.channel_routes.get((five_tuple, number))
        if route is None:
            self.counters.drop("no_channel")
            return
        if length > len(data) - 4:
            self.counters.drop("malformed")
            return
        allocation, peer, _ = route
        allocation.send_to_peer(data[4:4 + length], peer, now)

    def handle_connection_lost(self, five_tuple: Any, *, now: float) -> None:
        """A stream client went away: its allocation ends (RFC 8656 §3.1 / §7)."""
        allocation = self.allocations.get(five_tuple)
        if allocation is not None:
            self._delete_allocation(allocation)

    def handle_timer(self, *, now: float) -> None:
        """Expire whatever is due."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, kind, owner, item = heapq.heappop(heap)
            if kind == "allocation":
                if not owner.closed and owner.expires_at <= now:
                    self._delete_allocation(owner)
            elif kind == "permission":
                expires_at = owner.permissions.get(item)
                if not owner.closed and expires_at is not None and expires_at <= now:
                    del owner.permissions[item]
                    self.counters.permissions_active -= 1
                    self._sync_peer_routes(owner, item)
            elif kind == "channel":
                binding = owner.channels.get(item)
                if not owner.closed and binding is not None and binding.expires_at <= now:
                    self._remove_channel(owner, binding)
            elif kind == "reservation":
                reservation = self.reservations.get(item)
                if reservation is not None and reservation.expires_at <= now:
                    del self.reservations[item]
                    self._free_reservation(reservation)
        self.transactions.expire(now)

    def close(self) -> None:
        """End every allocation and free every reservation (at stop)."""
        for allocation in list(self.allocations.values()):
            self._delete_allocation(allocation)
        for reservation in self.reservations.values():
            self._free_reservation(reservation)
        self.reservations.clear()
        self._heap.clear()
        self.transactions = TransactionCache(self.transactions.lifetime_s, self.transactions.max_entries)

    # ------------------------------------------------------------------
    # Requests
    # ------------------------------------------------------------------

    def _schedule(self, at: float, kind: str, owner: Any, item: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, owner, item))

    def _count(self, method: int, result: str) -> None:
        key = (_METHOD_NAMES.get(method, "unknown"), result)
        self.counters.requests[key] = self.counters.requests.get(key, 0) + 1

    def _auth_failure(self, reason: str, client_host: str, now: float) -> None:
        failures = self.counters.auth_failures
        failures[reason] = failures.get(reason, 0) + 1
        listener = self.auth_failure_listener
        if listener is not None:
            listener(reason, client_host, now)

    @staticmethod
    def _respond(request: Message, msg_class: MessageClass, attrs: list[tuple[int, Any]],
                 auth: _Auth | None, fingerprint: bool) -> bytes:
        """A response to ``request``: signed with the request's key and hash, FINGERPRINT if it had one."""
        if auth is None:
            return encode_response(request.method, msg_class, request.transaction_id, attrs, None, False, fingerprint)
        return encode_response(request.method, msg_class, request.transaction_id, attrs, auth.key, auth.sha256,
                               fingerprint)

    def _error(self, message: Message, code: int, extra: tuple[tuple[int, Any], ...] = (),
               auth: _Auth | None = None, first: dict[int, Any] | None = None) -> bytes:
        """An error response; no reason phrase, SOFTWARE only when authenticated.

        :param first: the request's attributes by type, if already indexed.
        """
        value = _ERROR_CODE_VALUES.get(code)
        if value is None:
            value = _ERROR_CODE_VALUES[code] = encode_value(AttrType.ERROR_CODE, (code, ""), b"")
        attrs: list[tuple[int, Any]] = [(AttrType.ERROR_CODE, value)]
        attrs.extend(extra)
        if auth is not None:
            attrs.extend(self._software)
        self._count(message.method, str(int(code)))
        fingerprint = AttrType.FINGERPRINT in (first if first is not None else message)
        return self._respond(message, MessageClass.ERROR, attrs, auth, fingerprint)

    def _challenge(self, message: Message, first: dict[int, Any], code: int, client_host: str,
                   now: float) -> bytes | None:
        """A 401 or 438 with REALM, a fresh NONCE and PASSWORD-ALGORITHMS, rate limited per host.

        Nothing is stored: the nonce carries its own time and MAC (see :class:`NonceManager`).
        """
        if not self.challenge_limiter.allow(client_host, now):
            self.counters.drop("challenge_rate_limited")
            return None
        extra = (
            (AttrType.REALM, self._realm_value),
            (AttrType.NONCE, self.nonces.issue_bytes(client_host, now)),
            (AttrType.PASSWORD_ALGORITHMS, _PASSWORD_ALGORITHMS_VALUE),
        )
        return self._error(message, code, extra, None, first)

    def _handle_request(self, five_tuple: FiveTuple, message: Message, first: dict[int, Any], data: bytes,
                        to_client: Callable[[bytes], Any], now: float) -> bytes | None:
        method = message.method
        if method not in _METHOD_HANDLERS:
            return self._error(message, ErrorCode.BAD_REQUEST, (), None, first)
        cache_key = (five_tuple, message.transaction_id)
        cached = self.transactions.get(cache_key, now)
        if cached is not None:
            return cached
        unknown = [t for t in first if t < 0x8000 and t not in KNOWN_REQUIRED]
        if unknown:
            return self._error(message, ErrorCode.UNKNOWN_ATTRIBUTE, ((AttrType.UNKNOWN_ATTRIBUTES, tuple(sorted(unknown))),), None, first)
        if AttrType.MESSAGE_INTEGRITY not in first and AttrType.MESSAGE_INTEGRITY_SHA256 not in first:
            # Unauthenticated: answer in few bytes, so the TURN port is no amplifier (docs/turn.md).
            # An Allocate without REQUESTED-TRANSPORT, which no client sends, gets 400 (RFC 8656
            # §7.2 step 2) before any challenge; a request for an allocation this 5-tuple does not have
            # gets 437 before any challenge: the 401 (REALM, NONCE, PASSWORD-ALGORITHMS) goes only to a
            # well-formed Allocate, or to a client that holds an allocation.
            if method == Method.ALLOCATE and AttrType.REQUESTED_TRANSPORT not in first:
                return self._error(message, ErrorCode.BAD_REQUEST, (), None, first)
            if method != Method.ALLOCATE and five_tuple not in self.allocations:
                return self._error(message, ErrorCode.ALLOCATION_MISMATCH, (), None, first)
        auth_or_reply = self._authenticate(five_tuple, message, first, data, now)
        if not isinstance(auth_or_reply, _Auth):
            return auth_or_reply
        auth = auth_or_reply
        try:
            attrs = _METHOD_HANDLERS[method](self, five_tuple, message, first, auth, to_client, now)
        except ProtocolViolation as e:
            response = self._error(message, e.error_code, e.extra, auth, first)
        else:
            attrs.extend(self._software)
            self._count(method, "ok")
            response = self._respond(message, MessageClass.SUCCESS, attrs, auth, AttrType.FINGERPRINT in first)
        self.transactions.put(cache_key, response, now)
        return response

    def _authenticate(self, five_tuple: FiveTuple, message: Message, first: dict[int, Any], data: bytes,
                      now: float) -> _Auth | bytes | None:
        """The long-term credential checks of RFC 8489 §9.2.4, in its order."""
        client_host = five_tuple.client[0]
        has_mi = AttrType.MESSAGE_INTEGRITY in first
        has_mi256 = AttrType.MESSAGE_INTEGRITY_SHA256 in first
        # Step 1: no integrity at all -> 401 with REALM and NONCE.
        if not (has_mi or has_mi256):
            self._auth_failure("no_credentials", client_host, now)
            return self._challenge(message, first, ErrorCode.UNAUTHENTICATED, client_host, now)
        username_raw = first.get(AttrType.USERNAME)
        user_hash = first.get(AttrType.USERHASH)
        realm = first.get(AttrType.REALM)
        nonce = first.get(AttrType.NONCE)
        # Step 2: USERNAME/USERHASH, REALM and NONCE must all be there -> else 400.
        if (username_raw is None and user_hash is None) or realm is None or nonce is None:
            self._auth_failure("bad_request", client_host, now)
            return self._error(message, ErrorCode.BAD_REQUEST, (), None, first)
        # Step 3: with the nonce cookie, PASSWORD-ALGORITHM(S) must agree with our offer.
        algorithm = PasswordAlgorithm.MD5
        chosen = first.get(AttrType.PASSWORD_ALGORITHM)
        offered = first.get(AttrType.PASSWORD_ALGORITHMS)
        if chosen is not None or offered is not None:
            if chosen is None or offered is None or offered != _PASSWORD_ALGORITHMS_VALUE or len(chosen) < 4:
                self._auth_failure("bad_request", client_host, now)
                return self._error(message, ErrorCode.BAD_REQUEST, (), None, first)
            value = struct.unpack_from("!H", chosen)[0]
            if value not in (PasswordAlgorithm.MD5, PasswordAlgorithm.SHA256):
                self._auth_failure("bad_request", client_host, now)
                return self._error(message, ErrorCode.BAD_REQUEST, (), None, first)
            algorithm = PasswordAlgorithm(value)
        # Step 4: the nonce must be ours, for this address, and fresh -> else 438.
        if not self.nonces.check_bytes(nonce, client_host, now):
            self._auth_failure("stale_nonce", client_host, now)
            return self._challenge(message, first, ErrorCode.STALE_NONCE, client_host, now)
        if realm != self._realm_value:
            self._auth_failure("wrong_realm", client_host, now)
            return self._challenge(message, first, ErrorCode.UNAUTHENTICATED, client_host, now)
        # Step 5: find the user (by USERHASH if that is what was sent).
        if user_hash is not None:
            username = self.credentials.username_for_hash(user_hash)
            if username is None:
                self._auth_failure("unknown_user", client_host, now)
                return self._challenge(message, first, ErrorCode.UNAUTHENTICATED, client_host, now)
        else:
            assert username_raw is not None
            try:
                username = username_raw.decode("utf-8")
            except UnicodeDecodeError:
                self._auth_failure("unknown_user", client_host, now)
                return self._challenge(message, first, ErrorCode.UNAUTHENTICATED, client_host, now)
        keys, reason = self.credentials.candidate_keys(username, algorithm, now)
        if not keys:
            self._auth_failure(reason, client_host, now)
            return self._challenge(message, first, ErrorCode.UNAUTHENTICATED, client_host, now)
        # Step 6: check the integrity (SHA-256 when sent, it is the stronger).
        sha256 = has_mi256
        verify = verify_integrity_sha256 if sha256 else verify_integrity
        for key in keys:
            # None: the attribute is known to be there (``has_mi``/``has_mi256``); the MAC is checked in full.
            if verify(data, None, key):
                return _Auth(username, key, sha256)
        self._auth_failure("bad_integrity", client_host, now)
        return self._challenge(message, first, ErrorCode.UNAUTHENTICATED, client_host, now)

    # ------------------------------------------------------------------
    # Handlers (RFC 8656), each written as the RFC's steps
    # ------------------------------------------------------------------

    def _allocate(self, five_tuple: FiveTuple, message: Message, first: dict[int, Any], auth: _Auth,
                  to_client: Callable[[bytes], Any], now: float) -> list[tuple[int, Any]]:
        """RFC 8656 §7.2: receiving an Allocate request."""
        s = self.settings
        # Step 2: a 5-tuple already in use -> 437 (retransmissions were answered from the cache).
        if five_tuple in self.allocations:
            raise ProtocolViolation(ErrorCode.ALLOCATION_MISMATCH)
        # Step 3: REQUESTED-TRANSPORT must be there (400) and be UDP (442).
        transport = first.get(AttrType.REQUESTED_TRANSPORT)
        if transport is None or len(transport) != 4:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        if transport[0] != _UDP:
            raise ProtocolViolation(ErrorCode.UNSUPPORTED_TRANSPORT_PROTOCOL)
        # Step 4: DONT-FRAGMENT is supported (the relay socket sets DF).
        dont_fragment = AttrType.DONT_FRAGMENT in first
        token = first.get(AttrType.RESERVATION_TOKEN)
        even_port = first.get(AttrType.EVEN_PORT)
        requested_family = first.get(AttrType.REQUESTED_ADDRESS_FAMILY)
        additional_family = first.get(AttrType.ADDITIONAL_ADDRESS_FAMILY)
        # Step 5: RESERVATION-TOKEN excludes EVEN-PORT and the address family attributes (400).
        if token is not None and (even_port is not None or requested_family is not None
                                  or additional_family is not None):
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        # Step 6: EVEN-PORT must be well formed.
        if even_port is not None and len(even_port) < 1:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        # Step 7 (RFC 8656 §7.2 + RFC 6156): choose the families.
        if requested_family is not None and additional_family is not None:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        families: list[int]
        if requested_family is not None:
            family = _FAMILY_CODE.get(requested_family[0]) if requested_family else None
            if family is None:
                raise ProtocolViolation(ErrorCode.ADDRESS_FAMILY_NOT_SUPPORTED)
            families = [family]
        elif additional_family is not None:
            if not additional_family or additional_family[0] != 2:
                raise ProtocolViolation(ErrorCode.BAD_REQUEST)
            families = [4, 6]
        else:
            families = [4]
        if families[0] not in s.relay_hosts:
            raise ProtocolViolation(ErrorCode.ADDRESS_FAMILY_NOT_SUPPORTED)
        # Step 8: quotas -> 486 per user, 508 in all (counting the other nodes' allocations with
        # [redis]); while draining, 508, or 300 naming a node with room.
        elsewhere = self.elsewhere
        if self.draining:
            raise self._no_room("draining", five_tuple)
        if s.user_quota and (self.user_allocations.get(auth.username, 0)
                             + (elsewhere.user_count(auth.username) if elsewhere is not None else 0)) >= s.user_quota:
            self._quota_hit("user")
            raise ProtocolViolation(ErrorCode.ALLOCATION_QUOTA_REACHED)
        if len(self.allocations) + (elsewhere.total if elsewhere is not None else 0) >= s.total_quota:
            self._quota_hit("total")
            raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
        reservation: _Reservation | None = None
        if token is not None:
            reservation = self.reservations.pop(token, None)
            if reservation is None:
                raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
            families = [reservation.family]
        lifetime = self._lifetime(first.get(AttrType.LIFETIME), allow_zero=False)
        allocation = Allocation(five_tuple, auth.username, auth.key, auth.sha256, to_client, self.counters,
                                now + lifetime)
        self._made += 1
        allocation.id = f"a{self._made}"
        allocation.created_at = now
        extra: list[tuple[int, Any]] = []
        # Step 9: get a relayed transport address per family.
        for index, family in enumerate(families):
            if family not in s.relay_hosts:
                extra.append((AttrType.ADDRESS_ERROR_CODE, (2, 440, "")))
                continue
            if reservation is not None:
                port: int | None = reservation.port
                relay, reservation.relay = reservation.relay, None
                if relay is not None:
                    relay.allocation = allocation
            elif index == 0 and even_port is not None:
                port, relay, token_out = self._open_even(allocation, family, bool(even_port[0] & 0x80),
                                                         dont_fragment, now)
                if token_out is not None:
                    extra.append((AttrType.RESERVATION_TOKEN, token_out))
            else:
                port, relay = self._open_any(allocation, family, dont_fragment)
            if relay is None or port is None:
                if index == 0:
                    self._close_relays(allocation)
                    raise self._no_room("ports", five_tuple)
                extra.append((AttrType.ADDRESS_ERROR_CODE, (2, 508, "")))
                continue
            allocation.relays[family] = relay
            allocation.relay_ports[family] = port
            allocation.relayed_addresses[family] = (s.advertised_hosts.get(family, relay.address[0]), port)
        if s.max_bps:
            allocation.bucket_to_peer = TokenBucket(s.max_bps, s.max_bps, now)
            allocation.bucket_to_client = TokenBucket(s.max_bps, s.max_bps, now)
        self.allocations[five_tuple] = allocation
        self.user_allocations[auth.username] = self.user_allocations.get(auth.username, 0) + 1
        label = (_FAMILY_NAME[families[0]] if len(allocation.relays) == 1 else "dual",
                 _TRANSPORT_NAME[five_tuple.transport])
        self.counters.allocations_active[label] = self.counters.allocations_active.get(label, 0) + 1
        self.counters.allocations_total[label] = self.counters.allocations_total.get(label, 0) + 1
        allocation.label = label
        self._schedule(allocation.expires_at, "allocation", allocation)
        # Step 10: the success response (address values packed here, as the codec would).
        xor_key = MAGIC_COOKIE_BYTES + message.transaction_id
        attrs: list[tuple[int, Any]] = [
            (AttrType.XOR_RELAYED_ADDRESS, packed_xor_address(address, xor_key))
            for address in allocation.relayed_addresses.values()
        ]
        attrs.append((AttrType.LIFETIME, int(lifetime).to_bytes(4, "big")))
        attrs.extend(extra)
        attrs.append((AttrType.XOR_MAPPED_ADDRESS, packed_xor_address(five_tuple.client, xor_key)))
        return attrs

    def _lifetime(self, value: bytes | None, allow_zero: bool) -> float:
        """RFC 8656 §7.2/§7.3: min(requested, max), but never below the default; 0 only on Refresh.

        :param value: the request's LIFETIME value, if it had one.
        """
        s = self.settings
        if value is None:
            return float(s.default_lifetime_s)
        if len(value) != 4:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        requested = int.from_bytes(value, "big")
        if requested == 0 and allow_zero:
            return 0.0
        return float(max(s.default_lifetime_s, min(requested, s.max_lifetime_s)))

    def _quota_hit(self, kind: str) -> None:
        self.counters.quota_hit(kind)

    def _no_room(self, kind: str, five_tuple: FiveTuple) -> ProtocolViolation:
        """This node cannot take the allocation (``kind``): 300 Try Alternate naming a live node
        that can (RFC 8489 §10; UDP and TCP clients, same address family), else 508."""
        self._quota_hit(kind)
        if self.elsewhere is not None and five_tuple.transport is not Transport.TLS:
            family = 6 if ":" in five_tuple.client[0] else 4
            alternate = self.elsewhere.alternate(_TRANSPORT_NAME[five_tuple.transport], family)
            if alternate is not None:
                return ProtocolViolation(ErrorCode.TRY_ALTERNATE, ((AttrType.ALTERNATE_SERVER, alternate),))
        return ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)

    def _open(self, allocation: Allocation, family: int, port: int, dont_fragment: bool) -> Relay | None:
        return self.relay_opener.open_relay(self.settings.relay_hosts[family], port, allocation, dont_fragment)

    def _open_any(self, allocation: Allocation, family: int, dont_fragment: bool,
                  tries: int = 8) -> tuple[int | None, Relay | None]:
        """A random free port that binds; ports that fail to bind go back to the pool."""
        pool = self.port_pools[family]
        failed = []
        try:
            for _ in range(tries):
                port = pool.take()
                if port is None:
                    return None, None
                relay = self._open(allocation, family, port, dont_fragment)
                if relay is not None:
                    return port, relay
                failed.append(port)
            return None, None
        finally:
            for port in failed:
                pool.release(port)

    def _open_even(self, allocation: Allocation, family: int, reserve: bool, dont_fragment: bool,
                   now: float) -> tuple[int | None, Relay | None, bytes | None]:
        """RFC 8656 §7.2 EVEN-PORT: an even port, and with R set, hold the next one."""
        pool = self.port_pools[family]
        for _ in range(8):
            port = pool.take_even_pair()
            if port is None:
                return None, None, None
            relay = self._open(allocation, family, port, dont_fragment)
            if relay is None:
                pool.release(port)
                pool.release(port + 1)
                continue
            if not reserve:
                pool.release(port + 1)
                return port, relay, None
            token = os.urandom(8)
            reservation = _Reservation(token, family, port + 1, now + RESERVATION_LIFETIME_S, self.counters)
            reservation.relay = self.relay_opener.open_relay(self.settings.relay_hosts[family], port + 1,
                                                             reservation, dont_fragment)  # type: ignore[arg-type]
            if reservation.relay is None:
                relay.close()
                pool.release(port)
                pool.release(port + 1)
                continue
            self.reservations[token] = reservation
            self._schedule(reservation.expires_at, "reservation", None, token)
            return port, relay, token
        return None, None, None

    def _free_reservation(self, reservation: _Reservation) -> None:
        if reservation.relay is not None:
            reservation.relay.close()
            reservation.relay = None
        self.port_pools[reservation.family].release(reservation.port)

    def _refresh(self, five_tuple: FiveTuple, message: Message, auth: _Auth, now: float) -> list[tuple[int, Any]]:
        """RFC 8656 §7.3: receiving a Refresh request."""
        allocation = self._allocation_for(five_tuple, auth)
        # RFC 8656 §7.3: a REQUESTED-ADDRESS-FAMILY the allocation lacks -> 443.
        requested_family = message.get(AttrType.REQUESTED_ADDRESS_FAMILY)
        if requested_family is not None:
            family = _FAMILY_CODE.get(requested_family[0]) if requested_family else None
            if family is None or family not in allocation.relays:
                raise ProtocolViolation(ErrorCode.PEER_ADDRESS_FAMILY_MISMATCH)
        lifetime = self._lifetime(message.get(AttrType.LIFETIME), allow_zero=True)
        if lifetime == 0:
            self._delete_allocation(allocation)
        else:
            allocation.expires_at = now + lifetime
            self._schedule(allocation.expires_at, "allocation", allocation)
        return [(AttrType.LIFETIME, int(lifetime))]

    def _allocation_for(self, five_tuple: FiveTuple, auth: _Auth) -> Allocation:
        """The allocation of this 5-tuple (437 if none; 441 for another user, RFC 8656 §5)."""
        allocation = self.allocations.get(five_tuple)
        if allocation is None:
            raise ProtocolViolation(ErrorCode.ALLOCATION_MISMATCH)
        if allocation.username != auth.username:
            raise ProtocolViolation(ErrorCode.WRONG_CREDENTIALS)
        return allocation

    def _peer(self, message: Message, value: bytes, allocation: Allocation) -> tuple[str, int]:
        """Decode and vet one XOR-PEER-ADDRESS: 400 if malformed, 403 by policy, 443 wrong family."""
        peer = _xor_address(message, value)
        if peer is None:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        address = self.policy.check(peer[0])
        if address is None:
            self.counters.peers_denied += 1
            raise ProtocolViolation(ErrorCode.FORBIDDEN)
        if address.version not in allocation.relays:
            raise ProtocolViolation(ErrorCode.PEER_ADDRESS_FAMILY_MISMATCH)
        return str(address), peer[1]

    def _create_permission(self, five_tuple: FiveTuple, message: Message, auth: _Auth,
                           now: float) -> list[tuple[int, Any]]:
        """RFC 8656 §9.2: receiving a CreatePermission request (all peers or none)."""
        allocation = self._allocation_for(five_tuple, auth)
        values = message.get_all(AttrType.XOR_PEER_ADDRESS)
        if not values:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        hosts = {self._peer(message, value, allocation)[0] for value in values}
        new = [h for h in hosts if h not in allocation.permissions]
        if len(allocation.permissions) + len(new) > self.settings.max_permissions:
            self._quota_hit("permissions")
            raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
        for host in hosts:
            self._install_permission(allocation, host, now)
        return []

    def _install_permission(self, allocation: Allocation, host: str, now: float) -> None:
        """RFC 8656 §9: create or refresh the permission for ``host`` (300 s).

        A new permission also puts the channels already bound to peers at
        ``host`` back in the peer fast-path table.
        """
        new = host not in allocation.permissions
        expires_at = now + self.settings.permission_lifetime_s
        allocation.permissions[host] = expires_at
        self._schedule(expires_at, "permission", allocation, host)
        if new:
            self.counters.permissions_active += 1
            self._sync_peer_routes(allocation, host)

    @staticmethod
    def _sync_peer_routes(allocation: Allocation, host: str) -> None:
        """Make ``channel_by_peer`` hold the bindings to peers at ``host`` iff ``host`` has a permission.

        RFC 8656 §11.3: a peer datagram is relayed only with a permission for
        its IP, and only then does its channel matter.  Called when a
        permission appears or expires, never per packet; it walks the
        allocation's channels (at most ``max_channels``).
        """
        table = allocation.channel_by_peer
        if host in allocation.permissions:
            for binding in allocation.channels.values():
                if binding.peer[0] == host:
                    table[binding.peer] = binding
        else:
            for binding in allocation.channels.values():
                if binding.peer[0] == host:
                    table.pop(binding.peer, None)

    def _channel_bind(self, five_tuple: FiveTuple, message: Message, auth: _Auth,
                      now: float) -> list[tuple[int, Any]]:
        """RFC 8656 §11.2: receiving a ChannelBind request."""
        allocation = self._allocation_for(five_tuple, auth)
        number_value = message.get(AttrType.CHANNEL_NUMBER)
        peer_value = message.get(AttrType.XOR_PEER_ADDRESS)
        # Step 1: both attributes, channel number in 0x4000-0x4FFF (or the RFC 5766 range) -> else 400.
        if number_value is None or peer_value is None or len(number_value) != 4:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        number = struct.unpack("!H", number_value[:2])[0]
        if not 0x4000 <= number <= self.settings.max_channel_number:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        host, port = self._peer(message, peer_value, allocation)
        peer = (host, port)
        # Step 2: the number may not be bound to another peer, nor the peer to another number.
        bound = allocation.channels.get(number)
        if bound is not None and bound.peer != peer:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        other = allocation.bindings_by_peer.get(peer)
        if other is not None and other.number != number:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        if bound is None and len(allocation.channels) >= self.settings.max_channels:
            self._quota_hit("channels")
            raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
        if bound is None and host not in allocation.permissions \
                and len(allocation.permissions) >= self.settings.max_permissions:
            self._quota_hit("permissions")
            raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
        # Step 3: bind or refresh (600 s) and install or refresh the permission (300 s).
        expires_at = now + self.settings.channel_lifetime_s
        if bound is None:
            bound = ChannelBinding(number, peer, expires_at)
            allocation.channels[number] = bound
            allocation.bindings_by_peer[peer] = bound
            self.channel_routes[(five_tuple, number)] = (allocation, peer, allocation.relays[6 if ":" in host else 4])
            self.counters.channels_active += 1
        else:
            bound.expires_at = expires_at
        self._schedule(expires_at, "channel", allocation, number)
        self._install_permission(allocation, host, now)
        # The permission exists now, so the peer fast path may send ChannelData
        # (this also reinstates a binding whose permission had lapsed).
        allocation.channel_by_peer[peer] = bound
        return []

    def _handle_send(self, five_tuple: FiveTuple, message: Message, now: float) -> None:
        """RFC 8656 §11.2 (Send): relay DATA to XOR-PEER-ADDRESS if permitted; else drop silently."""
        allocation = self.allocations.get(five_tuple)
        if allocation is None:
            self.counters.drop("no_allocation")
            return
        peer_value = message.get(AttrType.XOR_PEER_ADDRESS)
        data = message.get(AttrType.DATA)
        if peer_value is None or data is None:
            self.counters.drop("malformed")
            return
        peer = _xor_address(message, peer_value)
        if peer is None:
            self.counters.drop("malformed")
            return
        host = peer[0]
        if host not in allocation.permissions:
            address = self.policy.check(host)
            if address is None:
                self.counters.peers_denied += 1
                self.counters.drop("peer_denied")
                return
            host = str(address)
            if host not in allocation.permissions:
                self.counters.drop("no_permission")
                return
        allocation.send_to_peer(data, (host, peer[1]), now)

    # ------------------------------------------------------------------
    # Teardown
    # ------------------------------------------------------------------

    def _remove_channel(self, allocation: Allocation, binding: ChannelBinding) -> None:
        del allocation.channels[binding.number]
        allocation.bindings_by_peer.pop(binding.peer, None)
        allocation.channel_by_peer.pop(binding.peer, None)
        self.channel_routes.pop((allocation.five_tuple, binding.number), None)
        self.counters.channels_active -= 1

    def _close_relays(self, allocation: Allocation) -> None:
        for family, relay in allocation.relays.items():
            relay.close()
            self.port_pools[family].release(allocation.relay_ports[family])
        allocation.relays.clear()
        allocation.relay_ports.clear()

    def _delete_allocation(self, allocation: Allocation) -> None:
        """End an allocation: tables, relays, ports, quotas, counters."""
        if allocation.closed:
            return
        allocation.closed = True
        for binding in list(allocation.channels.values()):
            self._remove_channel(allocation, binding)
        self.counters.permissions_active -= len(allocation.permissions)
        allocation.permissions.clear()
        self._close_relays(allocation)
        self.allocations.pop(allocation.five_tuple, None)
        count = self.user_allocations.get(allocation.username, 0) - 1
        if count > 0:
            self.user_allocations[allocation.username] = count
        else:
            self.user_allocations.pop(allocation.username, None)
        if allocation.label in self.counters.allocations_active:
            self.counters.allocations_active[allocation.label] -= 1



#: The request methods, one handler each (RFC 8656 §7.2 Allocate, §7.4 Refresh, §9.2 CreatePermission,
#: §12.2 ChannelBind), all called as ``(engine, five_tuple, message, first, auth, to_client, now)`` after
#: authentication; each returns the success response's attributes or raises ProtocolViolation.
_MethodHandler = Callable[["TurnEngine", FiveTuple, Message, dict[int, Any], _Auth, Callable[[bytes], Any], float],
                          list[tuple[int, Any]]]
_METHOD_HANDLERS: dict[int, _MethodHandler] = {
    Method.ALLOCATE: lambda e, ft, m, first, auth, to_client, now: e._allocate(ft, m, first, auth, to_client, now),
    Method.REFRESH: lambda e, ft, m, first, auth, to_client, now: e._refresh(ft, m, auth, now),
    Method.CREATE_PERMISSION: lambda e, ft, m, first, auth, to_client, now: e._create_permission(ft, m, auth, now),
    Method.CHANNEL_BIND: lambda e, ft, m, first, auth, to_client, now: e._channel_bind(ft, m, auth, now),
}

_TLV = struct.Struct("!HH")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_MI_TLV = _TLV.pack(AttrType.MESSAGE_INTEGRITY, 20)
_MI256_TLV = _TLV.pack(AttrType.MESSAGE_INTEGRITY_SHA256, 32)
_FINGERPRINT_TLV = _TLV.pack(AttrType.FINGERPRINT, 4)
_MESSAGE_TYPES: dict[tuple[int, int], int] = {}


def encode_response(method: int, msg_class: int, transaction_id: bytes, attrs: Iterable[tuple[int, Any]],
                    key: bytes | None, sha256: bool, fingerprint: bool) -> bytes:
    """Encode one response the way :func:`webrtcstack.stun.message.encode` does, for the request path.

    The same bytes as ``encode(Message(...), integrity_key=…)`` (a test holds
    the two together), without building a :class:`Message` or dispatching on
    values that are already bytes; the HMAC and CRC are one-shot calls.

    :param transaction_id: 12 bytes (the engine answers no RFC 3489 message).
    :param key: signs with MESSAGE-INTEGRITY, or with MESSAGE-INTEGRITY-SHA256 if ``sha256``.
    :param fingerprint: append FINGERPRINT.
    """
    msg_type = _MESSAGE_TYPES.get((method, msg_class))
    if msg_type is None:
        msg_type = _MESSAGE_TYPES[(method, msg_class)] = message_type(method, msg_class)
    xor_key = MAGIC_COOKIE_BYTES + transaction_id
    pack = _TLV.pack
    parts = []
    for attr_type, value in attrs:
        if value.__class__ is not bytes:
            value = encode_value(attr_type, value, xor_key)
        n = len(value)
        parts.append(pack(attr_type, n))
        parts.append(value)
        if n & 3:
            parts.append(_PAD[n & 3])
    body = b"".join(parts)
    if key is not None:
        if sha256:
            mac = hmac.digest(key, pack(msg_type, len(body) + 36) + xor_key + body, "sha256")
            body += _MI256_TLV + mac
        else:
            mac = hmac.digest(key, pack(msg_type, len(body) + 24) + xor_key + body, "sha1")
            body += _MI_TLV + mac
    if fingerprint:
        crc = binascii.crc32(pack(msg_type, len(body) + 8) + xor_key + body) ^ FINGERPRINT_XOR
        body += _FINGERPRINT_TLV + crc.to_bytes(4, "big")
    if len(body) > 0xFFFF:
        raise ValueError("message too long")
    return pack(msg_type, len(body)) + xor_key + body


_HOST_HEADS: dict[str, tuple[bytes, int, int]] = {}
_HOST_HEADS_MAX = 4096
_MAGIC_HIGH = int.from_bytes(MAGIC_COOKIE_BYTES[:2], "big")


def packed_xor_address(address: Address, xor_key: bytes) -> bytes:
    """An XOR-…-ADDRESS value: the same bytes as the codec's ``encode_value`` for it.

    The host's packed form (from the codec's :func:`pack_address`, so the
    same parsing and the same errors) is kept per host text in a bounded
    table: every Allocate answer carries two addresses, and parsing the text
    each time was a measurable part of the request path.

    :param xor_key: the magic cookie and the transaction ID (16 bytes).
    :raises ValueError: if the host is not an IP address.
    """
    host, port = address
    entry = _HOST_HEADS.get(host)
    if entry is None:
        plain = pack_address((host, 0), None)
        if len(_HOST_HEADS) >= _HOST_HEADS_MAX:
            _HOST_HEADS.clear()
        entry = _HOST_HEADS[host] = (plain[:2], int.from_bytes(plain[4:], "big"), len(plain) - 4)
    head, packed, n = entry
    return (head + (port ^ _MAGIC_HIGH).to_bytes(2, "big")
            + (packed ^ int.from_bytes(xor_key[:n], "big")).to_bytes(n, "big"))


def _xor_address(message: Message, value: bytes) -> tuple[str, int] | None:
    """``(host, port)`` from a raw XOR-…-ADDRESS value of ``message``, or None if malformed."""
    try:
        return unpack_address(value, message.xor_key())
    except StunDecodeError:
        return None

