"""Our TURN server on real loopback sockets (v4 and v6), driven by a small client in the test."""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.support import Event, after_each_call, recv_within
from tests.turn import msgs
from tests.turn.stack import PASSWORD, REALM, USER, TurnStack
from webrtcstack.stun.constants import AttrType, Method, MessageClass
from webrtcstack.turn.auth import long_term_key

KEY = long_term_key(USER, REALM, PASSWORD)


class SocketClient:
    """A non-blocking UDP or TCP socket speaking TURN; reads wait until the reactor says it is readable."""

    def __init__(self, host: str, port: int, tcp: bool = False) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        self.tcp = tcp
        self.sock.connect((host, port))
        self.sock.setblocking(False)
        self.nonce = b""
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def _frame(self) -> bytes | None:
        """One whole STUN message or ChannelData frame off the TCP buffer, if there is one."""
        if len(self.buffer) < 4:
            return None
        if self.buffer[0] < 0x40:
            size = 20 + struct.unpack_from("!H", self.buffer, 2)[0]
        else:
            n = struct.unpack_from("!H", self.buffer, 2)[0]
            size = 4 + n + (-n & 3)
        if len(self.buffer) < size:
            return None
        frame, self.buffer = self.buffer[:size], self.buffer[size:]
        return frame

    @defer.inlineCallbacks
    def recv(self, limit: float = 3.0) -> Any:
        """The next datagram (UDP) or frame (TCP), within ``limit`` s."""
        deadline = reactor.seconds() + limit
        while True:
            frame = self._frame() if self.tcp else None
            if frame is not None:
                return frame
            data, _ = yield recv_within(self.sock, max(0.0, deadline - reactor.seconds()))
            if not self.tcp:
                return data
            if not data:
                raise AssertionError("the server closed the connection")
            self.buffer += data

    @defer.inlineCallbacks
    def request(self, method: int, attrs: list[tuple[int, bytes]], tid: bytes | None = None) -> Any:
        tid = tid or os.urandom(12)
        if not self.nonce:
            self.send(msgs.encode(method, MessageClass.REQUEST, tid, attrs))
            challenge = msgs.decode((yield self.recv()))
            self.nonce = challenge.get(AttrType.NONCE)
        signed = attrs + [(AttrType.USERNAME, USER.encode()), (AttrType.REALM, REALM.encode()), (AttrType.NONCE, self.nonce)]
        self.send(msgs.encode(method, MessageClass.REQUEST, tid, signed, key=KEY, fingerprint=True))
        reply = msgs.decode((yield self.recv()))
        assert reply.transaction_id == tid
        defer.returnValue(reply)

    def close(self) -> None:
        self.sock.close()


class TurnSocketTests(unittest.TestCase):
    timeout = 30

    def start(self, host: str = "127.0.0.1") -> TurnStack:
        stack = TurnStack(host=host, relay_ip=host)
        stack.start()
        self.addCleanup(stack.stop)
        return stack

    def peer_socket(self, host: str) -> socket.socket:
        peer = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind((host, 0))
        peer.setblocking(False)
        self.addCleanup(peer.close)
        return peer

    def recv_peer(self, peer: socket.socket) -> Any:
        return recv_within(peer, 3)

    @defer.inlineCallbacks
    def round_trip(self, host: str, tcp: bool) -> Any:
        stack = self.start(host)
        client = SocketClient(host, stack.port, tcp=tcp)
        self.addCleanup(client.close)
        peer = self.peer_socket(host)
        peer_addr = peer.getsockname()[:2]
        reply = yield client.request(Method.ALLOCATE, [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0))),
                                                       (AttrType.REQUESTED_ADDRESS_FAMILY, bytes((2 if ":" in host else 1, 0, 0, 0)))])
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS, reply.get(AttrType.ERROR_CODE))
        relayed = msgs.parse_xor_address(reply.get(AttrType.XOR_RELAYED_ADDRESS), reply.transaction_id)
        # Send indication -> peer; peer -> Data indication.
        tid = os.urandom(12)
        yield client.request(Method.CREATE_PERMISSION, [(AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*peer_addr, tid))], tid)
        tid = os.urandom(12)
        client.send(msgs.encode(Method.SEND, MessageClass.INDICATION, tid,
                                [(AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*peer_addr, tid)), (AttrType.DATA, b"hello")]))
        data, source = yield self.recv_peer(peer)
        self.assertEqual((data, source[:2]), (b"hello", relayed))
        peer.sendto(b"world", relayed)
        indication = msgs.decode((yield client.recv()))
        self.assertEqual((indication.method, indication.get(AttrType.DATA)), (Method.DATA, b"world"))
        # ChannelBind, then ChannelData both ways.
        tid = os.urandom(12)
        reply = yield client.request(Method.CHANNEL_BIND, [(AttrType.CHANNEL_NUMBER, b"\x40\x07\x00\x00"),
                                                           (AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*peer_addr, tid))], tid)
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
        pad = b"\0\0\0" if tcp else b""
        client.send(b"\x40\x07\x00\x05abcde" + pad)
        data, _ = yield self.recv_peer(peer)
        self.assertEqual(data, b"abcde")
        peer.sendto(b"vwxyz", relayed)
        self.assertEqual((yield client.recv()), b"\x40\x07\x00\x05vwxyz" + pad)
        defer.returnValue((stack, client))

    def test_udp_ipv4(self) -> Any:
        """Over UDP on 127.0.0.1, Send/Data and ChannelData reach the peer and come back."""
        return self.round_trip("127.0.0.1", tcp=False)

    def test_udp_ipv6(self) -> Any:
        """Over UDP on ::1, with an IPv6 relay, the same exchanges work."""
        return self.round_trip("::1", tcp=False)

    @defer.inlineCallbacks
    def test_tcp_close_ends_allocation(self) -> Any:
        """Over TCP the exchanges work (ChannelData padded), and closing the connection frees the relay port."""
        stack, client = yield self.round_trip("127.0.0.1", tcp=True)
        [allocation] = stack.engine.manager.allocations.values()
        relay_port = allocation.relay_ports[4]
        ended = Event(lambda: stack.engine.allocation_count() == 0)
        self.addCleanup(after_each_call(stack.driver, "connection_lost", ended))
        client.close()
        yield ended.wait(5)
        self.assertTrue(stack.engine.manager.pools[4].is_free(relay_port))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", relay_port))  # the relay socket is really closed

    @defer.inlineCallbacks
    def test_stop_leaves_nothing(self) -> Any:
        """Stopping the services closes listeners and relays and leaves no delayed call."""
        stack = TurnStack()
        stack.start()
        client = SocketClient("127.0.0.1", stack.port)
        self.addCleanup(client.close)
        reply = yield client.request(Method.ALLOCATE, [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))])
        relay_port = msgs.parse_xor_address(reply.get(AttrType.XOR_RELAYED_ADDRESS), reply.transaction_id)[1]
        self.assertTrue(stack.driver.timer.active())
        yield stack.stop()
        # trial's own per-test timeout is the only delayed call allowed.
        left = [c for c in reactor.getDelayedCalls() if "onTimeout" not in getattr(c.func, "__qualname__", "")]
        self.assertEqual(left, [])
        self.assertFalse(stack.driver.timer.active())
        for kind, port in ((socket.SOCK_DGRAM, stack.port), (socket.SOCK_STREAM, stack.port), (socket.SOCK_DGRAM, relay_port)):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))

    @defer.inlineCallbacks
    def test_binding_still_served(self) -> Any:
        """A STUN Binding request on the TURN port is answered, over UDP and TCP."""
        stack = self.start()
        for tcp in (False, True):
            client = SocketClient("127.0.0.1", stack.port, tcp=tcp)
            self.addCleanup(client.close)
            tid = os.urandom(12)
            client.send(msgs.encode(Method.BINDING, MessageClass.REQUEST, tid, []))
            reply = msgs.decode((yield client.recv()))
            self.assertEqual((reply.msg_class, reply.transaction_id), (MessageClass.SUCCESS, tid))


class MobilitySocketTests(unittest.TestCase):
    timeout = 30
    peer_socket = TurnSocketTests.peer_socket
    recv_peer = TurnSocketTests.recv_peer

    @defer.inlineCallbacks
    def test_allocation_moves_to_a_new_source_port(self) -> Any:
        """RFC 8016 on real sockets: Allocate asks for a ticket, a Refresh with it from a new source port
        moves the allocation, and ChannelData from the new port keeps reaching the peer and coming back."""
        stack = TurnStack(extra="mobility = yes\n")
        stack.start()
        self.addCleanup(stack.stop)
        old = SocketClient("127.0.0.1", stack.port)
        self.addCleanup(old.close)
        peer = self.peer_socket("127.0.0.1")
        peer_addr = peer.getsockname()[:2]
        reply = yield old.request(Method.ALLOCATE, [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0))),
                                                    (AttrType.MOBILITY_TICKET, b"")])
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS, reply.get(AttrType.ERROR_CODE))
        ticket = reply.get(AttrType.MOBILITY_TICKET)
        self.assertTrue(ticket)
        relayed = msgs.parse_xor_address(reply.get(AttrType.XOR_RELAYED_ADDRESS), reply.transaction_id)
        tid = os.urandom(12)
        reply = yield old.request(Method.CHANNEL_BIND, [(AttrType.CHANNEL_NUMBER, b"\x40\x01\x00\x00"),
                                                        (AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*peer_addr, tid))], tid)
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
        # The client's address changes: a new socket, a new source port.
        new = SocketClient("127.0.0.1", stack.port)
        self.addCleanup(new.close)
        reply = yield new.request(Method.REFRESH, [(AttrType.MOBILITY_TICKET, ticket)])
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS, reply.get(AttrType.ERROR_CODE))
        self.assertTrue(reply.get(AttrType.MOBILITY_TICKET))
        new.send(b"\x40\x01\x00\x05moved")
        data, source = yield self.recv_peer(peer)
        self.assertEqual((data, source[:2]), (b"moved", relayed))
        peer.sendto(b"reply", relayed)
        self.assertEqual((yield new.recv()), b"\x40\x01\x00\x05reply")
        # The old source port holds nothing now; the old ticket is spent.
        reply = yield old.request(Method.REFRESH, [])
        self.assertEqual(msgs.parse_error_code(reply.get(AttrType.ERROR_CODE)), 437)
        reply = yield old.request(Method.REFRESH, [(AttrType.MOBILITY_TICKET, ticket)])
        self.assertEqual(msgs.parse_error_code(reply.get(AttrType.ERROR_CODE)), 400)
