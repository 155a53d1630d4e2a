# -*- test-case-name: tests.turn.test_engine -*-
"""The TURN engine: one sans-IO coordinator behind every client transport (RFC 8656).

Where things are:

* :mod:`webrtcstack.stun.message` encodes and decodes every STUN message
  (and holds the hot-path encoders, tested byte-equal to the general ones).
* :mod:`webrtcstack.turn.auth` checks long-term credentials (RFC 8489 §9.2).
* :mod:`webrtcstack.turn.methods` has one module per method, written as the
  RFC's steps; :data:`~webrtcstack.turn.methods.REQUEST_HANDLERS` is the table.
* :mod:`webrtcstack.turn.manager` owns allocations, relay ports,
  reservations and the one timer heap; :mod:`webrtcstack.turn.fastpath` is the
  table the adapters read for client data.

The engine itself only coordinates one request: decode → ChannelData and
plain Send indications to the fast path → Binding to the Binding handler →
400 for an unknown method → the transaction cache (a retransmission gets the
same bytes) → 420 for unknown comprehension-required attributes → the
unauthenticated shortcuts that keep the port from being an amplifier
(docs/turn.md) → authentication (401/400/438, challenges rate limited per
host) → the method's handler → a :class:`ProtocolViolation` becomes the error
response → sign, cache, return.

Inputs are method calls that take ``now`` (seconds) last; the reply to a
request is the return value.  Relay sockets come from an injected
:class:`RelayOpener` and data leaves through the ``send`` callables it
returns, called during ``handle_*``: the core never touches a socket, but it
does not return effect objects for data either (see docs/architecture.md).
The shell re-arms one timer at :meth:`TurnEngine.next_deadline`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attr

from webrtcstack.limits import ReplyRateLimiter
from webrtcstack.stun.attributes import encode_value
from webrtcstack.stun.binding import BindingHandler
from webrtcstack.stun.constants import MAGIC_COOKIE_BYTES, AttrType, ErrorCode, Method, MessageClass
from webrtcstack.stun.errors import ProtocolViolation, StunDecodeError
from webrtcstack.stun.integrity import verify_fingerprint
from webrtcstack.stun.message import Message, decode, encode_response, packed_xor_address
from webrtcstack.turn.allocation import TurnCounters
from webrtcstack.turn.auth import (
    FEATURE_PASSWORD_ALGORITHMS,
    FEATURE_USERNAME_ANONYMITY,
    Auth,
    Authenticator,
    CredentialStore,
    NonceManager,
)
from webrtcstack.turn.fastpath import FastPath
from webrtcstack.turn.five_tuple import FiveTuple, Transport
from webrtcstack.turn.manager import AllocationManager, RelayOpener
from webrtcstack.turn.methods import REQUEST_HANDLERS, Request, ResponseLater, handle_send
from webrtcstack.turn.mobility import TicketSealer
from webrtcstack.turn.policy import PeerPolicy
from webrtcstack.turn.tcp_relay import CONNECTING, WAITING, PeerLink, TcpConnection
from webrtcstack.turn.transactions import TransactionCache

__all__ = ["TurnEngine", "TurnSettings", "RelayOpener", "ProtocolViolation", "Elsewhere"]

#: Comprehension-required attributes (RFC 8489 §14: below 0x8000) a request may carry without a 420.
KNOWN_REQUIRED = frozenset({
    AttrType.MAPPED_ADDRESS, AttrType.USERNAME, AttrType.MESSAGE_INTEGRITY, AttrType.ERROR_CODE,
    AttrType.UNKNOWN_ATTRIBUTES, AttrType.CHANNEL_NUMBER, AttrType.LIFETIME, AttrType.XOR_PEER_ADDRESS,
    AttrType.DATA, AttrType.REALM, AttrType.NONCE, AttrType.XOR_RELAYED_ADDRESS, AttrType.REQUESTED_ADDRESS_FAMILY,
    AttrType.EVEN_PORT, AttrType.REQUESTED_TRANSPORT, AttrType.DONT_FRAGMENT, AttrType.MESSAGE_INTEGRITY_SHA256,
    AttrType.PASSWORD_ALGORITHM, AttrType.USERHASH, AttrType.XOR_MAPPED_ADDRESS, AttrType.RESERVATION_TOKEN,
    AttrType.PRIORITY, AttrType.USE_CANDIDATE, AttrType.CONNECTION_ID,
    AttrType.CHANGE_REQUEST,  # RFC 5780: harmless, ignored
    0x0010,  # BANDWIDTH (RFC 5766 draft era, sent by coturn's uclient -a): ignored
    AttrType.PADDING,  # RFC 5780: ignored
})
_METHOD_NAMES = {m.value: m.name.lower() for m in Method}
#: ``Transport.UDP`` → ``"udp"``: an enum's ``name`` is a Python-level property, read per Binding request otherwise
_TRANSPORT_NAMES = {t: t.name.lower() for t in Transport}
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
    #: RFC 8016: MOBILITY-TICKET on Allocate and Refresh (405 Mobility Forbidden when off)
    mobility: bool = False
    #: RFC 6062: TCP allocations, Connect and ConnectionBind; connections per allocation; bytes held before a bind
    tcp_relay: bool = False
    tcp_relay_max_connections: int = 64
    tcp_relay_buffer_bytes: int = 65536
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
            mobility=turn.mobility, tcp_relay=turn.tcp_relay,
            tcp_relay_max_connections=turn.tcp_relay_max_connections,
            tcp_relay_buffer_bytes=turn.tcp_relay_buffer_bytes,
        )


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
        self.counters = TurnCounters()
        self.manager = AllocationManager(settings.relay_hosts, settings.relay_ports, relay_opener, self.counters,
                                         randbelow)
        #: The tables the adapters' client fast paths read (see :mod:`webrtcstack.turn.fastpath`).
        self.fast_path: FastPath = self.manager.fast
        self.authenticator = Authenticator(credentials, NonceManager(
            settings.nonce_lifetime_s, FEATURE_PASSWORD_ALGORITHMS | FEATURE_USERNAME_ANONYMITY, key=nonce_key))
        self.challenge_limiter = ReplyRateLimiter(settings.unauthenticated_replies_per_second)
        self.transactions = TransactionCache()
        #: seals RFC 8016 mobility tickets (a random key per process)
        self.tickets = TicketSealer()
        self._software = ((AttrType.SOFTWARE, settings.software.encode()),) if settings.software else ()
        #: STUN Binding on the TURN ports: the one Binding implementation (stun.binding)
        self.binding = BindingHandler(settings.software)
        #: Set by the shell when the process drains (SIGTERM): new allocations get 508 (or 300).
        self.draining = False
        #: Called as ``(reason, client_host, now)`` on every authentication failure
        #: (after the counter is bumped); the shell logs it, rate limited per reason.
        self.auth_failure_listener: Callable[[str, str, float], None] | None = None
        #: The other nodes' allocations (``[redis]``; see :mod:`webrtcstack.cluster.turnview`):
        #: the quotas count them, and a node without room names one with 300 Try Alternate.
        self.elsewhere: Elsewhere | None = None

    # -- queries (the shell's whole view of the engine) ----------------------

    def allocation_count(self) -> int:
        """Allocations alive now."""
        return len(self.manager.allocations)

    def has_allocation(self, five_tuple: Any) -> bool:
        """Whether this 5-tuple holds an allocation (for the stream adapter's checks)."""
        return self.manager.get(five_tuple) is not None

    def allocations_by_user(self) -> dict[str, int]:
        """Allocations alive per user, as a copy (the cluster report)."""
        return dict(self.manager.by_user)

    def describe_allocations(self, now: float) -> list[dict[str, Any]]:
        """Every allocation alive, oldest first, as the sessions admin lists them."""
        return [a.describe(now) for a in sorted(self.manager.allocations.values(), key=lambda a: a.created_at)]

    def accepting(self) -> bool:
        """Whether an Allocate could get a relay here now (not draining, ports free in every family)."""
        return not self.draining and self.manager.ports_free()

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work (None: nothing scheduled)."""
        due = [t for t in (self.manager.next_deadline(), self.transactions.next_deadline()) if t is not None]
        return min(due) if due else None

    # -- inputs --------------------------------------------------------------

    def handle_client_message(self, five_tuple: Any, data: bytes, to_client: Callable[[bytes], Any],
                              *, now: float) -> bytes | None:
        """Process one datagram or framed stream message from a client.

        :param five_tuple: a :class:`FiveTuple` or the equal plain tuple.
        :param to_client: sends bytes back over this 5-tuple; kept by a new
            allocation for the peer fast path.
        :returns: bytes to send back to the client, if any.
        :raises StunDecodeError: the bytes are neither ChannelData nor STUN
            (nothing is counted: the shell drops a datagram or closes a stream, and counts).
        """
        if data and 0x40 <= data[0] < 0x80:
            self.fast_path.channel_data(five_tuple, data, now)
            return None
        if data[:2] == b"\x00\x01":
            # Binding requests (RFC 3489 ones too) go to the STUN Binding handler, the one implementation.
            return self.binding.handle(data, five_tuple[1], _TRANSPORT_NAMES[five_tuple[0]])
        if data[:2] == b"\x00\x16" and self.fast_path.send_indication(five_tuple, data, now):
            return None
        # Values stay raw bytes: a malformed one gets 400 from its handler, not a silent drop.
        message = decode(data, typed=False)
        if message.classic:
            raise StunDecodeError("no magic cookie (RFC 3489 STUN is not TURN)")
        # The first value of each attribute type, looked up once per request (reversed: the first wins).
        first: dict[int, Any] = dict(reversed(message.attributes))
        if AttrType.FINGERPRINT in first and not verify_fingerprint(data):
            raise StunDecodeError("FINGERPRINT does not match")
        if not isinstance(five_tuple, FiveTuple):
            five_tuple = FiveTuple(*five_tuple)
        if message.msg_class == MessageClass.REQUEST:
            return self._handle_request(five_tuple, message, first, data, to_client, now)
        if message.msg_class == MessageClass.INDICATION and message.method == Method.SEND:
            handle_send(self, five_tuple, message, now)
        return None

    def handle_client_packet(self, five_tuple: Any, data: bytes, to_client: Callable[[bytes], Any],
                             *, now: float) -> bytes | None:
        """:meth:`handle_client_message`, with bytes that are not STUN dropped and counted (``malformed``)."""
        try:
            return self.handle_client_message(five_tuple, data, to_client, now=now)
        except StunDecodeError:
            self.counters.drop("malformed")
            return None

    def handle_connection_lost(self, five_tuple: Any, *, now: float) -> None:
        """A stream client went away: its allocation ends (RFC 8656 §3.1 / §7); a client data
        connection's peer connection ends (RFC 6062 §5.5)."""
        manager = self.manager
        allocation = manager.get(five_tuple)
        if allocation is not None:
            manager.delete(allocation)
        elif manager.tcp_data:
            connection = manager.tcp_data.get(five_tuple)
            if connection is not None:
                manager.tcp_close(connection)

    # -- RFC 6062 TCP relay (the shell's peer and data connections report here) --

    def tcp_connect_result(self, connection: TcpConnection, ok: bool, *, now: float) -> None:
        """A Connect's connection to its peer is up (``ok``) or failed: the Connect is answered now."""
        if connection.state != CONNECTING:
            return  # timed out or ended meanwhile (its answer went then, or its allocation is gone)
        answer, connection.answer = connection.answer, None
        if ok:
            self.counters.tcp_event("connected")
            self.manager.tcp_connected(connection, now)
        else:
            self.counters.tcp_event("connect_failed")
            self.manager.tcp_close(connection)
        if answer is not None:
            answer(ok)

    def tcp_peer_arrived(self, allocation: Any, peer: Any, link: PeerLink, *, now: float) -> TcpConnection | None:
        """A peer connected to a TCP allocation's relayed address (RFC 6062 §5.3).

        :returns: the new connection, announced to the client with a
            ConnectionAttempt indication; None when it must be closed at once
            (no permission for the peer's IP, the allocation's connection
            limit, a connection with that peer already, or the allocation gone).
        """
        counters = self.counters
        if allocation.closed:
            return None
        if peer[0] not in allocation.permissions:
            counters.tcp_event("refused_no_permission")
            return None
        if peer in allocation.tcp_connections or \
                len(allocation.tcp_connections) >= self.settings.tcp_relay_max_connections:
            counters.quota_hit("tcp_relay_connections")
            return None
        connection = self.manager.tcp_open(allocation, peer, False, now)
        connection.link = link
        counters.tcp_event("accepted")
        transaction_id = os.urandom(12)
        allocation.to_client(encode_response(
            Method.CONNECTION_ATTEMPT, MessageClass.INDICATION, transaction_id,
            ((AttrType.XOR_PEER_ADDRESS, packed_xor_address(peer, MAGIC_COOKIE_BYTES + transaction_id)),
             (AttrType.CONNECTION_ID, connection.id.to_bytes(4, "big"))), None, False, False))
        return connection

    def tcp_peer_data(self, connection: TcpConnection, data: bytes) -> bool:
        """Bytes from a peer before its ConnectionBind, held for the client; True: stop reading for now."""
        if connection.state not in (CONNECTING, WAITING):
            return False
        return connection.hold(data, self.settings.tcp_relay_buffer_bytes)

    def take_tcp_data_connection(self, five_tuple: Any, client: PeerLink) -> TcpConnection | None:
        """After a ConnectionBind on ``five_tuple`` succeeded: its connection, now holding ``client``.

        The shell writes :meth:`TcpConnection.release_held` to ``client`` and
        then pipes bytes both ways; None if this connection bound nothing.
        """
        connection = self.manager.tcp_data.get(five_tuple)
        if connection is None or connection.client is not None:
            return None
        connection.client = client
        return connection

    def tcp_link_lost(self, connection: TcpConnection, *, now: float) -> None:
        """One side of a relayed TCP connection closed: the other side is closed too."""
        if connection.state == CONNECTING:
            self.tcp_connect_result(connection, False, now=now)
        else:
            self.manager.tcp_close(connection)

    def answer_later(self, request: Request, connection: TcpConnection) -> Callable[[bool], None]:
        """The answer to a Connect, for when the peer has answered: ``answer(ok)`` sends it."""
        message, auth, first, to_client = request.message, request.auth, request.first, request.to_client

        def answer(ok: bool) -> None:
            if ok:
                attrs: list[tuple[int, Any]] = [(AttrType.CONNECTION_ID, connection.id.to_bytes(4, "big"))]
                attrs.extend(self._software)
                self._count(message.method, "ok")
                response = encode_response(message.method, MessageClass.SUCCESS, message.transaction_id, attrs,
                                           auth.key, auth.sha256, AttrType.FINGERPRINT in first)
            else:
                response = self._error(message, ErrorCode.CONNECTION_TIMEOUT_OR_FAILURE, (), auth, first)
            to_client(response)

        return answer

    def handle_end(self, allocation_id: str, *, now: float) -> dict[str, Any] | None:
        """End one allocation at an operator's word (coturn's ``cs``): relays closed, quotas freed.

        :returns: what it was, or None when no allocation has that id.
        """
        allocation = self.manager.find(allocation_id)
        if allocation is None:
            return None
        described = allocation.describe(now)
        self.manager.delete(allocation)
        return described

    def handle_timer(self, *, now: float) -> None:
        """Expire whatever is due."""
        self.manager.expire(now)
        self.transactions.expire(now)

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
        self.authenticator.nonces.lifetime_s = settings.nonce_lifetime_s
        self.challenge_limiter = ReplyRateLimiter(settings.unauthenticated_replies_per_second)
        self._software = ((AttrType.SOFTWARE, settings.software.encode()),) if settings.software else ()
        if settings.software != self.binding.software:
            counters, self.binding = self.binding.counters, BindingHandler(settings.software)
            self.binding.counters = counters

    def close(self) -> None:
        """End every allocation and free every reservation (at stop)."""
        self.manager.close()
        self.transactions = TransactionCache(self.transactions.lifetime_s, self.transactions.max_entries)

    # -- one request ---------------------------------------------------------

    def _handle_request(self, five_tuple: FiveTuple, message: Message, first: dict[int, Any], data: bytes,
                        to_client: Callable[[bytes], Any], now: float) -> bytes | None:
        method = message.method
        handler = REQUEST_HANDLERS.get(method)
        if handler is None:
            return self._error(message, ErrorCode.BAD_REQUEST, (), None, first)
        cache_key = (five_tuple, message.transaction_id)
        cached = self.transactions.get(cache_key, now)
        if cached is not None:
            return cached
        unknown = [t for t in first if t < 0x8000 and t not in KNOWN_REQUIRED]
        if unknown:
            return self._error(message, ErrorCode.UNKNOWN_ATTRIBUTE,
                               ((AttrType.UNKNOWN_ATTRIBUTES, tuple(sorted(unknown))),), None, first)
        if AttrType.MESSAGE_INTEGRITY not in first and AttrType.MESSAGE_INTEGRITY_SHA256 not in first:
            # Unauthenticated: answer in few bytes, so the TURN port is no amplifier (docs/turn.md).
            # An Allocate without REQUESTED-TRANSPORT, which no client sends, gets 400 (RFC 8656
            # §7.2 step 3) before any challenge; a request for an allocation this 5-tuple does not
            # have gets 437: the 401 (REALM, NONCE, PASSWORD-ALGORITHMS) goes only to a
            # well-formed Allocate, or to a client that holds an allocation.
            if method == Method.ALLOCATE and AttrType.REQUESTED_TRANSPORT not in first:
                return self._error(message, ErrorCode.BAD_REQUEST, (), None, first)
            if method != Method.ALLOCATE and self.manager.get(five_tuple) is None \
                    and not (method == Method.REFRESH and AttrType.MOBILITY_TICKET in first and self.settings.mobility) \
                    and not (method == Method.CONNECTION_BIND and self.manager.tcp):
                # (A Refresh carrying a mobility ticket, and RFC 6062's ConnectionBind while a peer
                # connection waits for one, come from a new 5-tuple by design: they are challenged.)
                return self._error(message, ErrorCode.ALLOCATION_MISMATCH, (), None, first)
        client_host = five_tuple.client[0]
        verdict = self.authenticator.authenticate(first, data, client_host, now)
        if not isinstance(verdict, Auth):
            failures = self.counters.auth_failures
            failures[verdict.reason] = failures.get(verdict.reason, 0) + 1
            if self.auth_failure_listener is not None:
                self.auth_failure_listener(verdict.reason, client_host, now)
            if not verdict.challenge:
                return self._error(message, verdict.code, (), None, first)
            if not self.challenge_limiter.allow(client_host, now):
                self.counters.drop("challenge_rate_limited")
                return None
            return self._error(message, verdict.code, self.authenticator.challenge(client_host, now), None, first)
        try:
            attrs = handler(self, Request(five_tuple, message, first, verdict, to_client), now)
        except ResponseLater:
            return None  # answered when the outcome is known (RFC 6062 Connect; a stream: no retransmissions)
        except ProtocolViolation as e:
            response = self._error(message, e.error_code, e.extra, verdict, first)
        else:
            attrs.extend(self._software)
            self._count(method, "ok")
            response = encode_response(method, MessageClass.SUCCESS, message.transaction_id, attrs, verdict.key,
                                       verdict.sha256, AttrType.FINGERPRINT in first)
        self.transactions.put(cache_key, response, now)
        return response

    def _count(self, method: int, result: str) -> None:
        key = (_METHOD_NAMES.get(method, "unknown"), result)
        self.counters.requests[key] = self.counters.requests.get(key, 0) + 1

    def _error(self, message: Message, code: int, extra: tuple[tuple[int, Any], ...], auth: Auth | None,
               first: dict[int, Any]) -> bytes:
        """An error response: no reason phrase, SOFTWARE only when authenticated (docs/turn.md),
        signed like the request when it was authenticated, FINGERPRINT if the request had one."""
        value = _ERROR_CODE_VALUES.get(code)
        if value is None:
            value = _ERROR_CODE_VALUES[code] = encode_value(AttrType.ERROR_CODE, (code, ""), b"")
        attrs: list[tuple[int, Any]] = [(AttrType.ERROR_CODE, value), *extra]
        if auth is not None:
            attrs.extend(self._software)
        self._count(message.method, str(int(code)))
        return encode_response(message.method, MessageClass.ERROR, message.transaction_id, attrs,
                               auth.key if auth is not None else None, auth is not None and auth.sha256,
                               AttrType.FINGERPRINT in first)
