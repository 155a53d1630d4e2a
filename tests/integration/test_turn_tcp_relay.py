"""RFC 6062 TCP relay over real sockets: coturn's ``turnutils_uclient -T``, and a plain client for each exchange."""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from twisted.internet import defer, protocol, reactor, threads, utils
from twisted.trial import unittest

from tests.integration.test_turn_uclient import LOST, SENT
from tests.support import free_port, need_tool
from tests.turn import msgs
from tests.turn.stack import PASSWORD, REALM, USER, TurnStack
from webrtcstack.stun.constants import AttrType, Method, MessageClass
from webrtcstack.turn.auth import long_term_key

TCP_TRANSPORT = (AttrType.REQUESTED_TRANSPORT, bytes((6, 0, 0, 0)))
IO_TIMEOUT_S = 10.0


class StreamClient:
    """A blocking TURN client on one TCP connection (run in a thread, the server in the reactor)."""

    def __init__(self, address: tuple[str, int], nonce: bytes | None = None) -> None:
        self.sock = socket.create_connection(address, timeout=IO_TIMEOUT_S)
        self.buffer = b""
        self.nonce = nonce
        self.key = long_term_key(USER, REALM, PASSWORD)

    def close(self) -> None:
        self.sock.close()

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read_message(self) -> Any:
        header = self.read_exact(20)
        length = struct.unpack("!H", header[2:4])[0]
        return msgs.decode(header + self.read_exact(length))

    def request(self, method: int, attrs: list[tuple[int, bytes]]) -> Any:
        """A signed request (after a 401 for the nonce if need be); the response, skipping indications."""
        for _ in range(2):
            tid = os.urandom(12)
            signed = [] if self.nonce is None else [(AttrType.USERNAME, USER.encode()), (AttrType.REALM, REALM.encode()),
                                                    (AttrType.NONCE, self.nonce)]
            self.sock.sendall(msgs.encode(method, MessageClass.REQUEST, tid, list(attrs) + signed,
                                          key=self.key if self.nonce is not None else None))
            while True:
                reply = self.read_message()
                if reply.transaction_id == tid:
                    break
                self.pending.append(reply)
            code = reply.get(AttrType.ERROR_CODE)
            if code is not None and msgs.parse_error_code(code) == 401 and self.nonce is None:
                self.nonce = reply.get(AttrType.NONCE)
                continue
            return reply
        return reply

    #: indications read while waiting for a response
    pending: list[Any]

    def indication(self) -> Any:
        """The next indication (one read earlier first)."""
        if self.pending:
            return self.pending.pop(0)
        return self.read_message()


def _client(address: tuple[str, int], nonce: bytes | None = None) -> StreamClient:
    client = StreamClient(address, nonce)
    client.pending = []
    return client


def error(reply: Any) -> int | None:
    value = reply.get(AttrType.ERROR_CODE)
    return None if value is None else msgs.parse_error_code(value)


def xor(reply: Any, attr: int) -> tuple[str, int]:
    parsed = msgs.parse_xor_address(reply.get(attr), reply.transaction_id)
    assert parsed is not None
    return parsed


def peer_attr(host: str, port: int) -> tuple[int, bytes]:
    """An XOR-PEER-ADDRESS for any transaction (the IPv4 XOR key is the magic cookie alone)."""
    return (AttrType.XOR_PEER_ADDRESS, msgs.xor_address(host, port, bytes(12)))


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


class _Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class TcpRelayTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.stack = TurnStack(extra="tcp_relay = yes\ndenied_peers = 127.0.0.3\n")
        self.stack.start()
        self.addCleanup(self.stack.stop)
        self.server = ("127.0.0.1", self.stack.port)

    def requests(self, method: str) -> dict[str, int]:
        return {result: n for (m, result), n in self.stack.engine.counters.requests.items() if m == method}

    def in_thread(self, fn: Any) -> Any:
        return threads.deferToThread(fn)

    @defer.inlineCallbacks
    def test_uclient_client_to_client_over_tcp_allocations(self) -> Any:
        """coturn's ``turnutils_uclient -T``: two clients, TCP allocations, Connect and ConnectionBind, no loss."""
        uclient = need_tool("turnutils_uclient")
        args = ["-T", "-u", USER, "-w", PASSWORD, "-n", "20", "-m", "2", "-l", "170", "-z", "5",
                "-p", str(self.stack.port), "-e", "127.0.0.1", "127.0.0.1"]
        out, err, code = yield utils.getProcessOutputAndValue(uclient, args, env={})
        text = (out + err).decode(errors="replace")
        lost = LOST.search(out + err)
        self.assertIsNotNone(lost, text[-2000:])
        self.assertEqual(int(lost.group(1)), 0, text[-2000:])
        sent, received = SENT.findall(out + err)[-1]
        self.assertEqual((int(sent), int(received)), (40, 40), text[-2000:])
        self.assertEqual(code, 0)
        counters = self.stack.engine.counters
        self.assertGreaterEqual(self.requests("connect").get("ok", 0), 1, counters.requests)
        self.assertGreaterEqual(self.requests("connection_bind").get("ok", 0), 2, counters.requests)
        self.assertGreaterEqual(counters.tcp_connections.get("accepted", 0), 1, counters.tcp_connections)
        self.assertGreaterEqual(counters.bytes_to_peer, 40 * 170)
        self.assertEqual(self.requests("channel_bind"), {})

    @defer.inlineCallbacks
    def test_connect_then_bind_then_echo(self) -> Any:
        """Connect to a TCP echo server, ConnectionBind on a new connection, bytes both ways; the
        peer hanging up closes the data connection."""
        echo_port = reactor.listenTCP(0, protocol.Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(echo_port.stopListening)
        echo = ("127.0.0.1", echo_port.getHost().port)

        def run() -> tuple[Any, ...]:
            control = _client(self.server)
            try:
                allocated = control.request(Method.ALLOCATE, [TCP_TRANSPORT])
                connected = control.request(Method.CONNECT, [peer_attr(*echo)])
                again = control.request(Method.CONNECT, [peer_attr(*echo)])
                data = _client(self.server, control.nonce)
                try:
                    bound = data.request(Method.CONNECTION_BIND, [(AttrType.CONNECTION_ID,
                                                                   connected.get(AttrType.CONNECTION_ID))])
                    data.sock.sendall(b"hello through a TCP relay")
                    echoed = data.read_exact(25)
                finally:
                    data.close()
            finally:
                control.close()
            return allocated, connected, again, bound, echoed

        allocated, connected, again, bound, echoed = yield self.in_thread(run)
        self.assertIsNone(error(allocated))
        self.assertIsNone(error(connected))
        self.assertEqual(len(connected.get(AttrType.CONNECTION_ID)), 4)
        self.assertEqual(error(again), 446)
        self.assertIsNone(error(bound))
        self.assertEqual(echoed, b"hello through a TCP relay")

    def signed(self, client: StreamClient, method: int, attrs: list[tuple[int, bytes]]) -> tuple[bytes, bytes]:
        """A request signed with ``client``'s nonce, not sent: (transaction ID, bytes)."""
        tid = os.urandom(12)
        signed = [(AttrType.USERNAME, USER.encode()), (AttrType.REALM, REALM.encode()), (AttrType.NONCE, client.nonce)]
        return tid, msgs.encode(method, MessageClass.REQUEST, tid, list(attrs) + signed, key=client.key)

    @defer.inlineCallbacks
    def test_bytes_in_the_same_write_as_the_bind_reach_the_peer(self) -> Any:
        """ConnectionBind and the first application bytes in one segment: the bytes are the peer's, not STUN."""
        echo_port = reactor.listenTCP(0, protocol.Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(echo_port.stopListening)
        echo = ("127.0.0.1", echo_port.getHost().port)
        raw = b"\x00\x01 looks like a STUN header but is the peer's"

        def run() -> tuple[Any, bytes]:
            control = _client(self.server)
            try:
                control.request(Method.ALLOCATE, [TCP_TRANSPORT])
                connected = control.request(Method.CONNECT, [peer_attr(*echo)])
                data = _client(self.server, control.nonce)
                try:
                    _, bind = self.signed(data, Method.CONNECTION_BIND,
                                          [(AttrType.CONNECTION_ID, connected.get(AttrType.CONNECTION_ID))])
                    data.sock.sendall(bind + raw)
                    return data.read_message(), data.read_exact(len(raw))
                finally:
                    data.close()
            finally:
                control.close()

        bound, echoed = yield self.in_thread(run)
        self.assertIsNone(error(bound))
        self.assertEqual(echoed, raw)

    @defer.inlineCallbacks
    def test_failed_binds_in_one_write_are_each_answered_and_framing_goes_on(self) -> Any:
        """Two ConnectionBinds for unknown IDs and a Binding in one segment: 400, 400, a Binding answer,
        in order, on a connection that stays open."""

        def run() -> list[Any]:
            control = _client(self.server)
            try:
                control.request(Method.ALLOCATE, [TCP_TRANSPORT])
                data = _client(self.server, control.nonce)
                try:
                    first, one = self.signed(data, Method.CONNECTION_BIND, [(AttrType.CONNECTION_ID, b"\0\0\0\x63")])
                    second, two = self.signed(data, Method.CONNECTION_BIND, [(AttrType.CONNECTION_ID, b"\0\0\0\x64")])
                    third = os.urandom(12)
                    binding = msgs.encode(Method.BINDING, MessageClass.REQUEST, third, [])
                    data.sock.sendall(one + two + binding)
                    replies = [data.read_message() for _ in range(3)]
                    assert [r.transaction_id for r in replies] == [first, second, third], replies
                    again = data.request(Method.BINDING, [])
                    return replies + [again]
                finally:
                    data.close()
            finally:
                control.close()

        one, two, binding, again = yield self.in_thread(run)
        self.assertEqual((error(one), error(two)), (400, 400))
        self.assertEqual((binding.msg_class, error(binding)), (MessageClass.SUCCESS, None))
        self.assertEqual((again.msg_class, error(again)), (MessageClass.SUCCESS, None))
        self.assertEqual(self.requests("connection_bind").get("ok", 0), 0)

    @defer.inlineCallbacks
    def test_connect_to_a_closed_port_is_447(self) -> Any:
        closed = free_port()

        def run() -> Any:
            control = _client(self.server)
            try:
                control.request(Method.ALLOCATE, [TCP_TRANSPORT])
                return control.request(Method.CONNECT, [peer_attr("127.0.0.1", closed)])
            finally:
                control.close()

        reply = yield self.in_thread(run)
        self.assertEqual(error(reply), 447)
        self.assertEqual(self.stack.engine.counters.tcp_connections.get("connect_failed"), 1)

    @defer.inlineCallbacks
    def test_denied_peer_gets_no_syn(self) -> Any:
        """``denied_peers``: Connect gets 403 and nothing reaches the peer's listening socket."""
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.3", 0))
        listener.listen(4)
        listener.setblocking(False)

        def run() -> Any:
            control = _client(self.server)
            try:
                control.request(Method.ALLOCATE, [TCP_TRANSPORT])
                return control.request(Method.CONNECT, [peer_attr(*listener.getsockname())])
            finally:
                control.close()

        reply = yield self.in_thread(run)
        self.assertEqual(error(reply), 403)
        self.assertRaises(BlockingIOError, listener.accept)
        self.assertEqual(self.stack.engine.counters.tcp_connections, {})

    @defer.inlineCallbacks
    def test_incoming_connection_attempt_and_held_bytes(self) -> Any:
        """A peer connects to the relayed address: ConnectionAttempt; what it sent before the bind arrives
        first on the data connection; the client hanging up closes the peer."""

        def run() -> tuple[Any, ...]:
            control = _client(self.server)
            peer = None
            try:
                allocated = control.request(Method.ALLOCATE, [TCP_TRANSPORT])
                relayed = xor(allocated, AttrType.XOR_RELAYED_ADDRESS)
                permitted = control.request(Method.CREATE_PERMISSION, [peer_attr("127.0.0.1", 1)])
                peer = socket.create_connection(relayed, timeout=IO_TIMEOUT_S)
                peer.sendall(b"early bytes")
                attempt = control.indication()
                data = _client(self.server, control.nonce)
                try:
                    bound = data.request(Method.CONNECTION_BIND,
                                         [(AttrType.CONNECTION_ID, attempt.get(AttrType.CONNECTION_ID))])
                    early = data.read_exact(11)
                    data.sock.sendall(b"back")
                    back = recv_exact(peer, 4)
                finally:
                    data.close()
                after_close = peer.recv(10)  # the data connection's end closes the peer connection
                return allocated, permitted, attempt, peer.getsockname(), bound, early, back, after_close
            finally:
                if peer is not None:
                    peer.close()
                control.close()

        allocated, permitted, attempt, peer_name, bound, early, back, after_close = yield self.in_thread(run)
        self.assertIsNone(error(allocated))
        self.assertIsNone(error(permitted))
        self.assertEqual((attempt.method, attempt.msg_class), (Method.CONNECTION_ATTEMPT, MessageClass.INDICATION))
        self.assertEqual(xor(attempt, AttrType.XOR_PEER_ADDRESS), peer_name[:2])
        self.assertIsNone(error(bound))
        self.assertEqual(early, b"early bytes")
        self.assertEqual(back, b"back")
        self.assertEqual(after_close, b"")

    @defer.inlineCallbacks
    def test_incoming_without_permission_is_closed(self) -> Any:
        def run() -> tuple[Any, ...]:
            control = _client(self.server)
            try:
                allocated = control.request(Method.ALLOCATE, [TCP_TRANSPORT])
                relayed = xor(allocated, AttrType.XOR_RELAYED_ADDRESS)
                peer = socket.create_connection(relayed, timeout=IO_TIMEOUT_S)
                try:
                    try:
                        closed = peer.recv(10)
                    except ConnectionResetError:
                        closed = b""
                finally:
                    peer.close()
                # the next message on the control connection is this Refresh's answer: no ConnectionAttempt
                refreshed = control.request(Method.REFRESH, [])
                return closed, refreshed, control.pending
            finally:
                control.close()

        closed, refreshed, pending = yield self.in_thread(run)
        self.assertEqual(closed, b"")
        self.assertIsNone(error(refreshed))
        self.assertEqual(pending, [])
        self.assertEqual(self.stack.engine.counters.tcp_connections.get("refused_no_permission"), 1)

    @defer.inlineCallbacks
    def test_control_connection_end_closes_everything(self) -> Any:
        echo_port = reactor.listenTCP(0, protocol.Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(echo_port.stopListening)
        echo = ("127.0.0.1", echo_port.getHost().port)

        def run() -> bytes:
            control = _client(self.server)
            allocated = control.request(Method.ALLOCATE, [TCP_TRANSPORT])
            assert error(allocated) is None, allocated
            connected = control.request(Method.CONNECT, [peer_attr(*echo)])
            data = _client(self.server, control.nonce)
            try:
                data.request(Method.CONNECTION_BIND, [(AttrType.CONNECTION_ID, connected.get(AttrType.CONNECTION_ID))])
                control.close()
                return data.sock.recv(10)
            finally:
                data.close()

        after = yield self.in_thread(run)
        self.assertEqual(after, b"")
        self.assertEqual(self.stack.engine.counters.tcp_connections_active, 0)
        self.assertEqual(self.stack.engine.allocation_count(), 0)


class TcpRelayOffTests(unittest.TestCase):
    """Without ``tcp_relay``, a TCP Allocate gets 442 as before."""

    @defer.inlineCallbacks
    def test_442(self) -> Any:
        stack = TurnStack()
        stack.start()
        self.addCleanup(stack.stop)

        def run() -> Any:
            control = _client(("127.0.0.1", stack.port))
            try:
                return control.request(Method.ALLOCATE, [TCP_TRANSPORT])
            finally:
                control.close()

        reply = yield threads.deferToThread(run)
        self.assertEqual(error(reply), 442)
