# -*- test-case-name: tests.integration.test_stun_sockets -*-
"""STUN Binding over real UDP and TCP sockets on 127.0.0.1 and ::1, through the live listeners.

The listeners are the ones the running stack uses, built by
``build_turn_services`` (one UDP and one TCP listener per ``[turn] listen``
endpoint, the same port for both).
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.testing import StringTransport
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial import unittest

from tests.support import need_ipv6
from tests.turn.stack import TurnStack
from tests.turn.support import make_engine
from webrtcstack.stun import AttrType, Message, MessageClass, Method, decode, encode
from webrtcstack.turn.adapters.client_stream import TurnStreamFactory
from webrtcstack.turn.adapters.client_udp import TurnUdpListener
from webrtcstack.turn.adapters.driver import TurnDriver

TID = bytes(range(12))
REQUEST = encode(Message(Method.BINDING, MessageClass.REQUEST, TID))


class _UdpClient(protocol.DatagramProtocol):
    """Sends one datagram and fires with the first reply."""

    def __init__(self, payload: bytes, server: tuple[str, int]) -> None:
        self.payload = payload
        self.server = server
        self.reply: defer.Deferred[bytes] = defer.Deferred()

    def startProtocol(self) -> None:
        self.transport.write(self.payload, self.server)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if not self.reply.called:
            self.reply.callback(datagram)


class _TcpClient(protocol.Protocol):
    """Collects what the server sends; fires ``closed`` when the server hangs up."""

    def __init__(self) -> None:
        self.received = b""
        self.got_data: defer.Deferred[bytes] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.got_data.called:
            self.got_data.callback(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class StunSocketTests(unittest.TestCase):
    """Binding over UDP and TCP on the real reactor, through the stack's listeners."""

    timeout = 10

    def listen(self, host: str) -> TurnStack:
        """Start the STUN/TURN listeners on ``host`` (UDP and TCP on one free port), stopped at cleanup."""
        stack = TurnStack(host=host, relay_ip=host)
        stack.start()
        self.addCleanup(stack.stop)
        return stack

    @defer.inlineCallbacks
    def udp_binding(self, host: str) -> Any:
        """Send a Binding request over UDP and check XOR-MAPPED-ADDRESS is the client's socket."""
        server = self.listen(host)
        client = _UdpClient(REQUEST, (host, server.port))
        client_port = reactor.listenUDP(0, client, interface=host)
        self.addCleanup(client_port.stopListening)
        raw = yield client.reply
        response = decode(raw)
        self.assertEqual(response.transaction_id, TID)
        self.assertEqual(response.get(AttrType.XOR_MAPPED_ADDRESS), (host, client_port.getHost().port))

    @defer.inlineCallbacks
    def tcp_binding(self, host: str) -> Any:
        """Send a Binding request over TCP, in two pieces, and check the mapped address."""
        server = self.listen(host)
        creator = protocol.ClientCreator(reactor, _TcpClient)
        client = yield creator.connectTCP(host, server.port)
        self.addCleanup(client.transport.loseConnection)
        client.transport.write(REQUEST[:5])
        client.transport.write(REQUEST[5:])
        yield client.got_data
        response = decode(client.received)
        local = client.transport.getHost()
        self.assertEqual(response.get(AttrType.XOR_MAPPED_ADDRESS), (host, local.port))
        client.transport.loseConnection()
        yield client.closed

    def test_udp_ipv4(self) -> None:
        """UDP on 127.0.0.1: the reply maps to the client's own address and port."""
        return self.udp_binding("127.0.0.1")

    def test_udp_ipv6(self) -> None:
        """UDP on ::1: IPv6 sources (4-tuples on the socket) are answered with an IPv6 mapping."""
        need_ipv6()
        return self.udp_binding("::1")

    def test_tcp_ipv4(self) -> None:
        """TCP on 127.0.0.1: a request split over two writes is answered with the client's address."""
        return self.tcp_binding("127.0.0.1")

    def test_tcp_ipv6(self) -> None:
        """TCP on ::1 works the same way."""
        need_ipv6()
        return self.tcp_binding("::1")

    @defer.inlineCallbacks
    def test_tcp_garbage_closes(self) -> Any:
        """Bytes that are neither STUN nor ChannelData make the server close the connection."""
        server = self.listen("127.0.0.1")
        client = yield protocol.ClientCreator(reactor, _TcpClient).connectTCP("127.0.0.1", server.port)
        client.transport.write(b"GET / HTTP/1.1\r\n\r\n")
        yield client.closed
        self.assertEqual(client.received, b"")

    @defer.inlineCallbacks
    def test_udp_garbage_dropped_then_served(self) -> Any:
        """A garbage datagram is dropped and counted; the next good request is still answered."""
        server = self.listen("127.0.0.1")
        garbage = _UdpClient(b"\xffnot stun", ("127.0.0.1", server.port))
        p = reactor.listenUDP(0, garbage, interface="127.0.0.1")
        self.addCleanup(p.stopListening)
        yield self.udp_binding_on(server)
        self.assertEqual(server.engine.counters.dropped["malformed"], 1)

    @defer.inlineCallbacks
    def udp_binding_on(self, server: TurnStack) -> Any:
        """One more request to an existing UDP listener."""
        client = _UdpClient(REQUEST, ("127.0.0.1", server.port))
        p = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(p.stopListening)
        response = decode((yield client.reply))
        self.assertEqual(response.msg_class, MessageClass.SUCCESS)


class _FakeSocket:
    """Stands in for a bound UDP socket: ``recvfrom`` pops queued datagrams, ``sendto`` records."""

    def __init__(self, family: int, server: tuple[Any, ...]) -> None:
        self.family = family
        self.server = server
        self.inbox: deque[tuple[bytes, Any]] = deque()
        self.sent: list[tuple[bytes, Any]] = []

    def getsockname(self) -> tuple[Any, ...]:
        return self.server

    def fileno(self) -> int:
        return 99

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        if not self.inbox:
            raise BlockingIOError()
        return self.inbox.popleft()

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


class AdapterUnitTests(unittest.SynchronousTestCase):
    """The live listeners with fake sockets / transports and a task.Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.engine, _ = make_engine()
        self.driver = TurnDriver(self.engine, self.clock)
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def warnings(self) -> list[LogEvent]:
        """Events our adapters logged."""
        return [e for e in self.events if "STUN/" in e.get("log_format", "")]

    def udp(self, family: int = socket.AF_INET, server: tuple[Any, ...] = ("192.0.2.10", 3478)
            ) -> tuple[TurnUdpListener, _FakeSocket]:
        sock = _FakeSocket(family, server)
        return TurnUdpListener(self.driver, sock), sock  # type: ignore[arg-type]

    def test_udp_ipv6_four_tuple(self) -> None:
        """A 4-tuple IPv6 source is answered at that same 4-tuple, mapped without flowinfo and scope."""
        listener, sock = self.udp(socket.AF_INET6, ("2001:db8::1", 3478, 0, 0))
        addr = ("2001:db8::5", 6000, 0, 0)
        sock.inbox.append((REQUEST, addr))
        listener.doRead()
        [(data, sent_to)] = sock.sent
        self.assertEqual(sent_to, addr)
        self.assertEqual(decode(data).get(AttrType.XOR_MAPPED_ADDRESS), ("2001:db8::5", 6000))

    def test_udp_ipv6_zone_and_mapped(self) -> None:
        """A link-local source keeps its scope for the reply but maps without the zone; ::ffff:a.b.c.d maps to IPv4."""
        listener, sock = self.udp(socket.AF_INET6, ("::", 3478, 0, 0))
        sock.inbox.append((REQUEST, ("fe80::5%lo", 6000, 0, 1)))
        sock.inbox.append((REQUEST, ("::ffff:192.0.2.7", 6001, 0, 0)))
        listener.doRead()
        [(first, first_to), (second, second_to)] = sock.sent
        self.assertEqual(first_to, ("fe80::5%lo", 6000, 0, 1))
        self.assertEqual(decode(first).get(AttrType.XOR_MAPPED_ADDRESS), ("fe80::5", 6000))
        self.assertEqual(decode(second).get(AttrType.XOR_MAPPED_ADDRESS), ("192.0.2.7", 6001))

    def test_udp_malformed_log_rate_limited(self) -> None:
        """A flood of malformed datagrams logs once per 10 s, then says how many were suppressed."""
        listener, sock = self.udp()
        for _ in range(100):
            sock.inbox.append((b"\xff", ("192.0.2.1", 1)))
            listener.doRead()
        self.assertEqual(len(self.warnings()), 1)
        self.clock.advance(10)
        sock.inbox.append((b"\xff", ("192.0.2.1", 1)))
        listener.doRead()
        self.assertEqual(len(self.warnings()), 2)
        self.assertEqual(self.warnings()[1]["suppressed"], 99)
        self.assertEqual(self.engine.counters.dropped["malformed"], 101)
        self.assertEqual(sock.sent, [])

    def test_udp_controller_bug_contained(self) -> None:
        """An unexpected exception in the controller is counted and logged, not raised into the reactor."""
        def broken(*args: Any, **kwargs: Any) -> bytes | None:
            raise RuntimeError("bug")
        self.patch(self.engine, "handle_client_message", broken)
        listener, sock = self.udp()
        sock.inbox.append((b"\x00\x03" + REQUEST[2:], ("192.0.2.1", 1)))
        sock.inbox.append((b"\x00\x03" + REQUEST[2:], ("192.0.2.1", 1)))
        listener.doRead()
        self.assertEqual(listener.failures, 2)
        self.assertEqual(len(self.warnings()), 1)

    def connect_tcp(self, **kwargs: Any) -> tuple[Any, StringTransport, TurnStreamFactory]:
        """A TurnStreamProtocol on a StringTransport."""
        factory = TurnStreamFactory(self.driver, **kwargs)
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport, factory

    def test_tcp_frames_and_replies(self) -> None:
        """Two requests in one segment get two replies; a byte-at-a-time request gets one."""
        proto, transport, factory = self.connect_tcp()
        proto.dataReceived(REQUEST + REQUEST)
        replies = transport.value()
        half = len(replies) // 2
        self.assertEqual(decode(replies[:half]), decode(replies[half:]))
        self.assertEqual(decode(replies[:half]).transaction_id, TID)
        transport.clear()
        for i in range(len(REQUEST)):
            proto.dataReceived(REQUEST[i:i + 1])
        self.assertEqual(decode(transport.value()).msg_class, MessageClass.SUCCESS)
        self.assertEqual(self.driver.stream_connections, 1)
        proto.connectionLost()
        self.assertEqual(self.driver.stream_connections, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_tcp_connection_limit(self) -> None:
        """Past max_connections (the [turn] max_tcp_connections budget) a connection is aborted at once and counted as a quota hit."""
        first, _, factory = self.connect_tcp(max_connections=1)
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertTrue(transport.disconnecting)
        self.assertEqual((factory.refused, self.engine.counters.quota_hits["tcp_connections"]), (1, 1))
        self.assertEqual(self.driver.stream_connections, 1)
        proto.connectionLost()
        first.connectionLost()
        self.assertEqual(self.driver.stream_connections, 0)

    def test_tcp_oversize_closes(self) -> None:
        """A frame longer than max_frame_bytes closes the connection and is counted."""
        proto, transport, factory = self.connect_tcp(max_frame_bytes=64)
        proto.dataReceived(b"\x00\x01\x01\x00")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.dropped, 1)
        self.assertEqual(self.engine.counters.dropped["framing"], 1)
        proto.dataReceived(REQUEST)
        self.assertEqual(transport.value(), b"")
        proto.connectionLost()

    def test_tcp_malformed_stun_closes(self) -> None:
        """A STUN frame that does not decode closes the connection (a stream cannot resynchronise)."""
        proto, transport, factory = self.connect_tcp()
        proto.dataReceived(b"\x00\x01\x00\x04\x21\x12\xa4\x42" + bytes(12) + b"\x00\x06\x00\x09")
        self.assertTrue(transport.disconnecting)
        self.assertEqual((factory.dropped, self.engine.counters.dropped["malformed"]), (1, 1))
        self.assertEqual(len(self.warnings()), 2)
        proto.connectionLost()

    def test_tcp_channel_data_before_allocation_closes(self) -> None:
        """ChannelData (or text such as an HTTP request line) before any allocation closes at once."""
        proto, transport, factory = self.connect_tcp()
        proto.dataReceived(b"GET")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.dropped, 1)
        proto.connectionLost()

    def test_tcp_idle_timeout(self) -> None:
        """A connection silent for idle_timeout_s is closed; activity pushes the deadline back."""
        proto, transport, factory = self.connect_tcp(idle_timeout_s=30)
        self.clock.advance(20)
        proto.dataReceived(REQUEST)
        self.clock.advance(20)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.idle_closed, 1)
        proto.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])
