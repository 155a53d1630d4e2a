"""Test helpers: a fake relay opener and a tiny TURN client that talks to a TurnEngine directly."""

from __future__ import annotations

import os
import struct
from typing import Any

from webrtcstack.stun.constants import AttrType, Method, MessageClass
from webrtcstack.stun.message import Message
from webrtcstack.turn.auth import CredentialStore, PasswordAlgorithm, long_term_key
from webrtcstack.turn.engine import TurnEngine, TurnSettings
from webrtcstack.turn.five_tuple import FiveTuple, Transport
from webrtcstack.turn.policy import PeerPolicy

from . import msgs

REALM = "example.org"
SERVER = ("192.0.2.10", 3478)


class FakeRelay:
    """A relay socket that records what it sends."""

    def __init__(self, opener: "FakeOpener", host: str, port: int) -> None:
        self.opener = opener
        self.address = (host, port)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.closed = False

    def sendto(self, data: bytes, peer: tuple[str, int]) -> int:
        self.sent.append((data, peer))
        return len(data)

    def close(self) -> None:
        self.closed = True
        self.opener.open_ports.discard(self.address)


class FakeLink:
    """One side of a relayed TCP connection (RFC 6062), recording what happens to it."""

    def __init__(self, peer: tuple[str, int] | None = None) -> None:
        self.peer = peer
        self.written: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


class FakeOpener:
    """Opens FakeRelays; ports listed in ``busy`` fail to bind."""

    def __init__(self) -> None:
        self.busy: set[int] = set()
        self.relays: list[FakeRelay] = []
        self.open_ports: set[tuple[str, int]] = set()
        self.dont_fragment: list[bool] = []
        #: RFC 6062 connects asked for: (relay address, peer, connection, link)
        self.connects: list[tuple[Any, Any, Any, Any]] = []
        self.refuse_connects = False

    def open_relay(self, host: str, port: int, allocation: Any, dont_fragment: bool) -> FakeRelay | None:
        if port in self.busy:
            return None
        assert (host, port) not in self.open_ports, "port bound twice"
        relay = FakeRelay(self, host, port)
        relay.allocation = allocation
        self.relays.append(relay)
        self.open_ports.add((host, port))
        self.dont_fragment.append(dont_fragment)
        return relay

    def open_tcp_relay(self, host: str, port: int, allocation: Any) -> FakeRelay | None:
        return self.open_relay(host, port, allocation, False)

    def connect_tcp(self, relay: FakeRelay, peer: tuple[str, int], connection: Any) -> "FakeLink | None":
        if self.refuse_connects:
            return None
        link = FakeLink(peer)
        self.connects.append((relay.address, peer, connection, link))
        return link


def make_engine(users: tuple[tuple[str, str], ...] = (("alice", "secret-a"), ("bob", "secret-b")),
                secrets: tuple[str, ...] = (), policy: PeerPolicy | None = None,
                **settings: Any) -> tuple[TurnEngine, FakeOpener]:
    """An engine with fake relays on 10.0.0.1 / fd00::1 and a small port range."""
    opener = FakeOpener()
    defaults: dict[str, Any] = dict(realm=REALM, relay_hosts={4: "10.0.0.1", 6: "fd00::1"},
                                    advertised_hosts={4: "203.0.113.5", 6: "2001:db8::5"},
                                    relay_ports=(50000, 50099))
    defaults.update(settings)
    engine = TurnEngine(TurnSettings(**defaults), CredentialStore(REALM, users, secrets),
                        policy or PeerPolicy(), opener)
    return engine, opener


class Client:
    """A TURN client over one 5-tuple, calling the engine directly.

    Responses are decoded; the 401 dance is done on the first signed request.
    """

    def __init__(self, engine: TurnEngine, client: tuple[str, int] = ("198.51.100.7", 40000),
                 username: str = "alice", password: str = "secret-a",
                 transport: Transport = Transport.UDP, server: tuple[str, int] = SERVER) -> None:
        self.engine = engine
        self.five_tuple = FiveTuple(transport, client, server)
        self.username = username
        self.password = password
        self.nonce: bytes | None = None
        self.received: list[bytes] = []
        self.algorithm: PasswordAlgorithm | None = None
        self.use_userhash = False

    def to_client(self, data: bytes) -> None:
        self.received.append(data)

    @property
    def key(self) -> bytes:
        return long_term_key(self.username, REALM, self.password, self.algorithm or PasswordAlgorithm.MD5)

    def send_raw(self, data: bytes, now: float = 0.0) -> Message | None:
        reply = self.engine.handle_client_packet(self.five_tuple, data, self.to_client, now=now)
        if reply is None:
            return None
        #: The last reply's bytes, for integrity checks.
        self.last_reply = reply
        return msgs.decode(reply)

    def build(self, method: int, attrs: list[tuple[int, bytes]], *, sign: bool = True,
              transaction_id: bytes | None = None, cls: int = MessageClass.REQUEST,
              fingerprint: bool = False) -> bytes:
        transaction_id = transaction_id or os.urandom(12)
        attrs = list(attrs)
        key = None
        sha256 = False
        if sign:
            if self.use_userhash:
                from webrtcstack.turn.auth import userhash
                attrs.append((AttrType.USERHASH, userhash(self.username, REALM)))
            else:
                attrs.append((AttrType.USERNAME, self.username.encode()))
            attrs += [(AttrType.REALM, REALM.encode()), (AttrType.NONCE, self.nonce or b"")]
            if self.algorithm is not None:
                attrs += [(AttrType.PASSWORD_ALGORITHMS, msgs.password_algorithms_value((1, 2))),
                          (AttrType.PASSWORD_ALGORITHM, struct.pack("!HH", self.algorithm, 0))]
                sha256 = self.algorithm == PasswordAlgorithm.SHA256
            key = self.key
        return msgs.encode(method, cls, transaction_id, attrs, key=key, sha256=sha256, fingerprint=fingerprint)

    def fetch_nonce(self, now: float = 0.0) -> None:
        # As clients do: an unsigned Allocate with REQUESTED-TRANSPORT (a bare one gets 400, not a challenge).
        reply = self.send_raw(self.build(Method.ALLOCATE, [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))],
                                         sign=False), now)
        assert reply is not None and reply.get(AttrType.NONCE) is not None
        self.nonce = reply.get(AttrType.NONCE)

    def request(self, method: int, attrs: list[tuple[int, bytes]] | None = None, now: float = 0.0,
                **kw: Any) -> Message:
        if self.nonce is None:
            self.fetch_nonce(now)
        reply = self.send_raw(self.build(method, attrs or [], **kw), now)
        assert reply is not None
        return reply

    def allocate(self, attrs: list[tuple[int, bytes]] | None = None, now: float = 0.0, **kw: Any) -> Message:
        base = [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))]
        return self.request(Method.ALLOCATE, base + list(attrs or []), now, **kw)

    def peer_attr(self, host: str, port: int, transaction_id: bytes) -> tuple[int, bytes]:
        return (AttrType.XOR_PEER_ADDRESS, msgs.xor_address(host, port, transaction_id))

    def create_permission(self, *hosts: str, now: float = 0.0) -> Message:
        tid = os.urandom(12)
        return self.request(Method.CREATE_PERMISSION, [self.peer_attr(h, 9, tid) for h in hosts], now,
                            transaction_id=tid)

    def channel_bind(self, number: int, host: str, port: int, now: float = 0.0) -> Message:
        tid = os.urandom(12)
        return self.request(Method.CHANNEL_BIND, [(AttrType.CHANNEL_NUMBER, struct.pack("!HH", number, 0)),
                                                  self.peer_attr(host, port, tid)], now, transaction_id=tid)

    def refresh(self, lifetime: int | None = None, now: float = 0.0, attrs: list[tuple[int, bytes]] | None = None) -> Message:
        extra = [] if lifetime is None else [(AttrType.LIFETIME, struct.pack("!I", lifetime))]
        return self.request(Method.REFRESH, extra + list(attrs or []), now)

    def send_indication(self, host: str, port: int, data: bytes, now: float = 0.0) -> None:
        tid = os.urandom(12)
        raw = msgs.encode(Method.SEND, MessageClass.INDICATION, tid,
                          [self.peer_attr(host, port, tid), (AttrType.DATA, data)])
        assert self.send_raw(raw, now) is None


def error_code(message: Message) -> int | None:
    """The error number of a response, or None for a success."""
    value = message.get(AttrType.ERROR_CODE)
    return None if value is None else msgs.parse_error_code(value)


def relayed(message: Message) -> list[tuple[str, int]]:
    """Every XOR-RELAYED-ADDRESS in a response."""
    out = []
    for t, v in message.attributes:
        if t == AttrType.XOR_RELAYED_ADDRESS:
            parsed = msgs.parse_xor_address(v, message.transaction_id)
            assert parsed is not None
            out.append(parsed)
    return out


def lifetime(message: Message) -> int:
    value = message.get(AttrType.LIFETIME)
    assert value is not None
    return struct.unpack("!I", value)[0]
