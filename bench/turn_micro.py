"""In-process cost of TURN's per-packet paths, no sockets: a check that a change adds nothing to them.

Each row drives the real code with a relay and a transport that only count,
so what is timed is our Python per packet (no system calls, no other
process): UDP ChannelData and Send indications from a client (the fast
paths), a peer datagram to a client (ChannelData), TCP ChannelData through
the stream protocol (framer included), and a STUN Binding request.

Run it on a quiet machine, twice, in each tree to compare::

    PYTHONPATH=src python bench/turn_micro.py [--rounds N]

Timings on a shared VM wander by 10-20 % from run to run.  Instructions do
not: under callgrind, the difference between two round counts, divided by
three times their difference (each row runs three times), is the exact
instructions per packet, the same on every run::

    for n in 10000 30000; do PYTHONPATH=src valgrind --tool=callgrind \
        --callgrind-out-file=/dev/null python bench/turn_micro.py --only binding --rounds $n \
        2>&1 | grep refs; done

The socket-level figures beside coturn are in ``bench/turn_relay.py`` and
``bench/stun_binding.py``; this one only sees our side.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import time
from typing import Any

from webrtcstack.stun.constants import AttrType, Method, MessageClass
from webrtcstack.stun.message import Message, encode
from webrtcstack.turn.adapters.client_stream import TurnStreamFactory
from webrtcstack.turn.auth import CredentialStore, long_term_key
from webrtcstack.turn.engine import TurnEngine, TurnSettings
from webrtcstack.turn.five_tuple import FiveTuple, Transport
from webrtcstack.turn.policy import PeerPolicy

REALM = "bench"
PEER = ("93.184.216.34", 9000)
PAYLOAD = b"x" * 160


class _Relay:
    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.allocation: Any = None
        self.sent = 0

    def sendto(self, data: bytes, peer: Any) -> int:
        self.sent += 1
        return len(data)

    def close(self) -> None:
        pass


class _Opener:
    def open_relay(self, host: str, port: int, allocation: Any, dont_fragment: bool) -> _Relay:
        relay = _Relay(host, port)
        relay.allocation = allocation
        return relay


class _Transport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += 1

    def getPeer(self) -> Any:
        return _Address("198.51.100.7", 40000)

    def getHost(self) -> Any:
        return _Address("192.0.2.10", 3478)

    def loseConnection(self) -> None:
        pass

    abortConnection = loseConnection


class _Address:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port


class _Reactor:
    def seconds(self) -> float:
        return 1.0

    def callLater(self, *args: Any, **kw: Any) -> Any:
        raise AssertionError("no timer expected")


class _Driver:
    """What the stream protocol needs of the driver."""

    def __init__(self, engine: TurnEngine) -> None:
        self.engine = engine
        self.reactor = _Reactor()
        self.stream_connections = 0

    def handle_client(self, five_tuple: Any, data: bytes, to_client: Any, now: float) -> bool:
        reply = self.engine.handle_client_message(five_tuple, data, to_client, now=now)
        if reply is not None:
            to_client(reply)
        return True

    def connection_lost(self, five_tuple: Any) -> None:
        pass


def _request(engine: TurnEngine, five_tuple: FiveTuple, method: int, attrs: list[tuple[int, Any]],
             out: list[bytes]) -> Message:
    from webrtcstack.stun.message import decode

    key = long_term_key("u", REALM, "p")
    nonce = None
    for _ in range(2):
        signed = [] if nonce is None else [(AttrType.USERNAME, "u"), (AttrType.REALM, REALM), (AttrType.NONCE, nonce)]
        raw = encode(Message(method, MessageClass.REQUEST, os.urandom(12), tuple(attrs + signed)),
                     integrity_key=key if nonce is not None else None)
        reply = engine.handle_client_message(five_tuple, raw, out.append, now=1.0)
        assert reply is not None
        message = decode(reply)
        if nonce is None and message.get(AttrType.NONCE) is not None and message.get(AttrType.ERROR_CODE):
            nonce = message.get(AttrType.NONCE)
            continue
        return message
    raise AssertionError("no answer")


def _allocated(transport: Transport) -> tuple[TurnEngine, FiveTuple, Any]:
    settings = TurnSettings(realm=REALM, relay_hosts={4: "10.0.0.1"}, advertised_hosts={4: "203.0.113.5"},
                            relay_ports=(50000, 50999))
    engine = TurnEngine(settings, CredentialStore(REALM, (("u", "p"),), ()), PeerPolicy(), _Opener())
    five_tuple = FiveTuple(transport, ("198.51.100.7", 40000), ("192.0.2.10", 3478))
    out: list[bytes] = []
    _request(engine, five_tuple, Method.ALLOCATE, [(AttrType.REQUESTED_TRANSPORT, (17 << 24).to_bytes(4, "big"))], out)
    _request(engine, five_tuple, Method.CHANNEL_BIND, [(AttrType.CHANNEL_NUMBER, struct.pack("!HH", 0x4000, 0)),
                                                       (AttrType.XOR_PEER_ADDRESS, PEER)], out)
    allocation = engine.manager.get(five_tuple)
    return engine, five_tuple, allocation


def _time(fn: Any, n: int) -> float:
    """Best of three runs of ``n`` calls, in µs per call."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200_000, help="packets per timed run")
    parser.add_argument("--only", default="", help="run only the rows whose name contains this text")
    args = parser.parse_args()
    n = args.rounds

    engine, five_tuple, allocation = _allocated(Transport.UDP)
    channel_data = struct.pack("!HH", 0x4000, len(PAYLOAD)) + PAYLOAD
    fast = engine.fast_path

    def udp_channel(k: int) -> None:
        cd = fast.channel_data
        for _ in range(k):
            cd(five_tuple, channel_data, 1.0)

    send = encode(Message(Method.SEND, MessageClass.INDICATION, os.urandom(12),
                          ((AttrType.XOR_PEER_ADDRESS, PEER), (AttrType.DATA, PAYLOAD))))

    def udp_send(k: int) -> None:
        si = fast.send_indication
        for _ in range(k):
            si(five_tuple, send, 1.0)

    allocation.to_client = lambda data: None

    def peer_to_client(k: int) -> None:
        deliver = allocation.handle_peer_datagram
        for _ in range(k):
            deliver(PAYLOAD, PEER, 1.0)

    tcp_engine, _, _ = _allocated(Transport.TCP)
    factory = TurnStreamFactory(_Driver(tcp_engine), idle_timeout_s=0)
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(_Transport())
    tcp_engine.manager.get(protocol.five_tuple)  # the protocol's 5-tuple is the allocated one
    padded = channel_data + b"\0" * (-len(channel_data) & 3)

    def tcp_channel(k: int) -> None:
        received = protocol.dataReceived
        for _ in range(k):
            received(padded)

    def stun_binding_of(request: bytes) -> Any:
        def run(k: int) -> None:
            handle = engine.handle_client_message
            for _ in range(k):
                handle(five_tuple, request, None, now=1.0)

        return run

    tid = os.urandom(12)
    # what browsers and most clients send a STUN server (20 bytes), answered from the header
    stun_binding = stun_binding_of(encode(Message(Method.BINDING, MessageClass.REQUEST, tid, ()), fingerprint=False))
    # with FINGERPRINT (28 bytes): the same, after the CRC check
    stun_binding_fp = stun_binding_of(encode(Message(Method.BINDING, MessageClass.REQUEST, tid, ())))
    # with another attribute: decoded, the general path
    stun_binding_sw = stun_binding_of(encode(Message(Method.BINDING, MessageClass.REQUEST, tid,
                                                     ((AttrType.SOFTWARE, "bench"),))))

    def wakeups(direct: bool) -> Any:
        """One datagram sent and one epoll wake-up served per call, on a reactor of its own."""
        from twisted.internet.epollreactor import EPollReactor

        from webrtcstack.turn.adapters import dispatch

        class Reader:
            def __init__(self) -> None:
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.sock.bind(("127.0.0.1", 0))
                self.sock.setblocking(False)

            def fileno(self) -> int:
                return self.sock.fileno()

            def doRead(self) -> None:
                self.sock.recv(2048)

            def logPrefix(self) -> str:
                return "Reader"

        reactor = EPollReactor()
        if direct:
            dispatch.register(reactor, Reader)
        reader = Reader()
        reactor.addReader(reader)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = reader.sock.getsockname()

        def run(k: int) -> None:
            send, iterate = sender.sendto, reactor.doIteration
            for _ in range(k):
                send(PAYLOAD, target)
                iterate(0)

        return run

    rows = [("UDP ChannelData, client to peer", udp_channel), ("UDP Send indication, client to peer", udp_send),
            ("UDP peer datagram to client (ChannelData)", peer_to_client),
            ("TCP ChannelData through the stream protocol", tcp_channel), ("STUN Binding request, no attributes", stun_binding),
            ("STUN Binding request with FINGERPRINT", stun_binding_fp),
            ("STUN Binding request with SOFTWARE (decoded)", stun_binding_sw),
            ("epoll wake-up for a datagram, Twisted's dispatch", wakeups(False)),
            ("epoll wake-up for a datagram, direct dispatch", wakeups(True))]
    print(f"{'path':52} µs/packet")
    for name, fn in rows:
        if args.only.lower() not in name.lower():
            continue
        print(f"{name:52} {_time(fn, n):8.3f}")
        if fn is tcp_channel:
            assert tcp_engine.counters.packets_to_peer > 0, "the TCP row relayed nothing"


if __name__ == "__main__":
    main()
