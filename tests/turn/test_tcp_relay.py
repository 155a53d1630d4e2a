"""RFC 6062 TCP relay on the core: Allocate TCP, Connect, ConnectionAttempt, ConnectionBind, timers, limits."""

from __future__ import annotations

import os
import struct

from twisted.trial import unittest

from webrtcstack.stun.constants import AttrType, Method, MessageClass
from webrtcstack.stun.framing import StreamFramer
from webrtcstack.turn.five_tuple import Transport
from webrtcstack.turn.policy import PeerPolicy
from webrtcstack.turn.tcp_relay import BOUND, CLOSED, CONNECT_TIMEOUT_S, CONNECTION_BIND_TIMEOUT_S, WAITING

from . import msgs
from .support import Client, FakeLink, error_code, make_engine, relayed

TCP_TRANSPORT = [(AttrType.REQUESTED_TRANSPORT, bytes((6, 0, 0, 0)))]
PEER = ("93.184.216.20", 8080)


class TcpRelayTests(unittest.TestCase):

    def setUp(self) -> None:
        self.engine, self.opener = make_engine(tcp_relay=True, max_bps=0)
        self.control = Client(self.engine, client=("198.51.100.7", 40000), transport=Transport.TCP)

    def allocate(self, client: Client | None = None) -> None:
        reply = (client or self.control).request(Method.ALLOCATE, TCP_TRANSPORT)
        self.assertIsNone(error_code(reply), reply)

    def connect(self, peer: tuple[str, int] = PEER, now: float = 0.0) -> tuple[bytes, object]:
        """A Connect request; returns its transaction id and the response (None: answered later)."""
        tid = os.urandom(12)
        reply = self.control.send_raw(self.control.build(Method.CONNECT, [self.control.peer_attr(*peer, tid)],
                                                         transaction_id=tid), now)
        return tid, reply

    def data_client(self, port: int = 40001, username: str = "alice", password: str = "secret-a") -> Client:
        client = Client(self.engine, client=("198.51.100.7", port), transport=Transport.TCP,
                        username=username, password=password)
        client.nonce = self.control.nonce  # the nonce is good on any connection from this host
        return client

    def bind(self, client: Client, connection_id: int, now: float = 0.0):
        return client.request(Method.CONNECTION_BIND,
                              [(AttrType.CONNECTION_ID, connection_id.to_bytes(4, "big"))], now)

    def connected(self, now: float = 0.0) -> int:
        """Allocate, Connect to PEER, the peer answers: the CONNECTION-ID of the success response."""
        self.allocate()
        tid, reply = self.connect(now=now)
        self.assertIsNone(reply)
        _, _, connection, _ = self.opener.connects[-1]
        self.engine.tcp_connect_result(connection, True, now=now)
        response = msgs.decode(self.control.received[-1])
        self.assertEqual(response.transaction_id, tid)
        self.assertEqual((response.method, response.msg_class), (Method.CONNECT, MessageClass.SUCCESS))
        self.assertTrue(msgs.verify(self.control.received[-1], self.control.key))
        return int.from_bytes(response.get(AttrType.CONNECTION_ID), "big")

    # -- Allocate (§5.1) -----------------------------------------------------

    def test_allocate_tcp_off_is_442(self) -> None:
        engine, _ = make_engine()
        reply = Client(engine, transport=Transport.TCP).request(Method.ALLOCATE, TCP_TRANSPORT)
        self.assertEqual(error_code(reply), 442)

    def test_allocate_tcp_over_udp_is_400(self) -> None:
        reply = Client(self.engine, transport=Transport.UDP).request(Method.ALLOCATE, TCP_TRANSPORT)
        self.assertEqual(error_code(reply), 400)

    def test_allocate_tcp_with_dont_fragment_or_even_port_is_400(self) -> None:
        for extra in ([(AttrType.DONT_FRAGMENT, b"")], [(AttrType.EVEN_PORT, b"\x00")]):
            reply = self.control.request(Method.ALLOCATE, TCP_TRANSPORT + extra)
            self.assertEqual(error_code(reply), 400, extra)

    def test_allocate_tcp_listens_on_a_relayed_address(self) -> None:
        reply = self.control.request(Method.ALLOCATE, TCP_TRANSPORT)
        self.assertIsNone(error_code(reply))
        allocation = self.engine.manager.get(self.control.five_tuple)
        self.assertTrue(allocation.tcp)
        self.assertEqual(relayed(reply)[0][0], "203.0.113.5")

    def test_channel_bind_on_a_tcp_allocation_is_400(self) -> None:
        self.allocate()
        self.assertEqual(error_code(self.control.channel_bind(0x4000, *PEER)), 400)

    def test_send_indication_on_a_tcp_allocation_is_dropped(self) -> None:
        self.allocate()
        self.control.create_permission(PEER[0])
        self.control.send_indication(*PEER, b"x" * 11)
        relay = self.opener.relays[-1]
        self.assertEqual(relay.sent, [])
        self.assertEqual(self.engine.counters.packets_to_peer, 0)

    # -- Connect (§5.2) ------------------------------------------------------

    def test_connect_answers_once_the_peer_answers(self) -> None:
        connection_id = self.connected()
        self.assertNotEqual(connection_id, 0)
        relay_address, peer, connection, link = self.opener.connects[0]
        self.assertEqual(relay_address, self.opener.relays[0].address)
        self.assertEqual(peer, PEER)
        self.assertEqual(connection.state, WAITING)
        self.assertEqual(self.engine.counters.tcp_connections_active, 1)

    def test_connect_failure_is_447(self) -> None:
        self.allocate()
        tid, reply = self.connect()
        self.assertIsNone(reply)
        connection = self.opener.connects[0][2]
        self.engine.tcp_connect_result(connection, False, now=1.0)
        response = msgs.decode(self.control.received[-1])
        self.assertEqual(response.transaction_id, tid)
        self.assertEqual(error_code(response), 447)
        self.assertEqual(self.engine.counters.tcp_connections_active, 0)
        # the peer may be tried again
        self.assertIsNone(self.connect()[1])

    def test_connect_timeout_is_447_and_abandons_the_connect(self) -> None:
        self.allocate()
        self.connect(now=0.0)
        link = self.opener.connects[0][3]
        self.engine.handle_timer(now=CONNECT_TIMEOUT_S - 0.1)
        self.assertFalse(link.closed)
        self.engine.handle_timer(now=CONNECT_TIMEOUT_S)
        self.assertTrue(link.closed)
        self.assertEqual(error_code(msgs.decode(self.control.received[-1])), 447)
        self.assertEqual(self.engine.counters.tcp_connections.get("connect_timeout"), 1)
        # a late success report changes nothing
        self.engine.tcp_connect_result(self.opener.connects[0][2], True, now=31.0)
        self.assertEqual(len(self.control.received), 1)

    def test_connect_twice_to_one_peer_is_446(self) -> None:
        self.connected()
        self.assertEqual(error_code(self.connect()[1]), 446)
        self.assertEqual(len(self.opener.connects), 1)

    def test_connect_to_a_denied_peer_is_403_and_sends_no_syn(self) -> None:
        import ipaddress

        engine, opener = make_engine(tcp_relay=True, policy=PeerPolicy(denied=[ipaddress.ip_network("10.0.0.0/8")]))
        self.engine, self.opener = engine, opener
        self.control = Client(engine, transport=Transport.TCP)
        self.allocate()
        self.assertEqual(error_code(self.connect(("10.1.2.3", 80))[1]), 403)
        self.assertEqual(error_code(self.connect(("127.0.0.1", 80))[1]), 403)  # loopback: denied by default
        self.assertEqual(error_code(self.connect(("127.0.0.1", 80))[1]), 403)
        self.assertEqual(self.opener.connects, [])

    def test_connect_without_peer_address_is_400(self) -> None:
        self.allocate()
        reply = self.control.request(Method.CONNECT, [])
        self.assertEqual(error_code(reply), 400)

    def test_connect_on_a_udp_allocation_is_400(self) -> None:
        self.control.allocate()
        self.assertEqual(error_code(self.connect()[1]), 400)

    def test_connect_without_allocation_is_437(self) -> None:
        self.control.fetch_nonce()
        self.assertEqual(error_code(self.connect()[1]), 437)

    def test_connections_per_allocation_are_limited(self) -> None:
        engine, opener = make_engine(tcp_relay=True, tcp_relay_max_connections=2)
        self.engine, self.opener = engine, opener
        self.control = Client(engine, transport=Transport.TCP)
        self.allocate()
        self.assertIsNone(self.connect(("93.184.216.20", 1))[1])
        self.assertIsNone(self.connect(("93.184.216.20", 2))[1])
        self.assertEqual(error_code(self.connect(("93.184.216.20", 3))[1]), 486)
        self.assertEqual(len(opener.connects), 2)

    def test_connect_refused_by_the_shell_is_508(self) -> None:
        self.allocate()
        self.opener.refuse_connects = True
        self.assertEqual(error_code(self.connect()[1]), 508)
        self.assertEqual(self.engine.counters.tcp_connections_active, 0)

    # -- ConnectionBind (§5.4) -----------------------------------------------

    def test_connection_bind_makes_a_data_connection(self) -> None:
        connection_id = self.connected()
        data = self.data_client()
        reply = self.bind(data, connection_id)
        self.assertIsNone(error_code(reply))
        self.assertTrue(msgs.verify(data.last_reply, data.key))
        client_link = FakeLink()
        connection = self.engine.take_tcp_data_connection(data.five_tuple, client_link)
        self.assertIsNotNone(connection)
        self.assertEqual(connection.state, BOUND)
        self.assertIs(connection.client, client_link)
        # only once
        self.assertIsNone(self.engine.take_tcp_data_connection(data.five_tuple, FakeLink()))
        # no second bind of that id, nor of that data connection
        self.assertEqual(error_code(self.bind(self.data_client(40002), connection_id)), 400)

    def test_connection_bind_unknown_id_is_400(self) -> None:
        self.connected()
        reply = self.bind(self.data_client(), 12345)
        self.assertEqual(error_code(reply), 400)

    def test_connection_bind_by_another_user_is_441(self) -> None:
        connection_id = self.connected()
        reply = self.bind(self.data_client(username="bob", password="secret-b"), connection_id)
        self.assertEqual(error_code(reply), 441)
        self.assertEqual(self.engine.manager.tcp[connection_id].state, WAITING)

    def test_connection_bind_over_udp_or_on_the_control_connection_is_400(self) -> None:
        connection_id = self.connected()
        udp = Client(self.engine, client=("198.51.100.7", 40003), transport=Transport.UDP)
        udp.nonce = self.control.nonce
        self.assertEqual(error_code(self.bind(udp, connection_id)), 400)
        self.assertEqual(error_code(self.bind(self.control, connection_id)), 400)

    def test_connection_bind_without_credentials_is_challenged(self) -> None:
        connection_id = self.connected()
        data = self.data_client()
        raw = data.build(Method.CONNECTION_BIND, [(AttrType.CONNECTION_ID, connection_id.to_bytes(4, "big"))],
                         sign=False)
        self.assertEqual(error_code(data.send_raw(raw)), 401)

    def test_no_bind_in_30_seconds_closes_the_peer_connection(self) -> None:
        connection_id = self.connected(now=0.0)
        link = self.opener.connects[0][3]
        self.engine.handle_timer(now=CONNECTION_BIND_TIMEOUT_S - 0.1)
        self.assertFalse(link.closed)
        self.engine.handle_timer(now=CONNECTION_BIND_TIMEOUT_S)
        self.assertTrue(link.closed)
        self.assertEqual(self.engine.counters.tcp_connections.get("bind_timeout"), 1)
        self.assertEqual(error_code(self.bind(self.data_client(), connection_id, now=31.0)), 400)

    def test_bind_race_the_timer_after_the_bind_changes_nothing(self) -> None:
        connection_id = self.connected(now=0.0)
        self.bind(self.data_client(), connection_id, now=29.9)
        self.engine.handle_timer(now=30.0)
        self.assertEqual(self.engine.manager.tcp[connection_id].state, BOUND)
        self.assertFalse(self.opener.connects[0][3].closed)

    def test_bind_race_two_data_connections_one_wins(self) -> None:
        connection_id = self.connected()
        first, second = self.data_client(40001), self.data_client(40002)
        self.assertIsNone(error_code(self.bind(first, connection_id)))
        self.assertEqual(error_code(self.bind(second, connection_id)), 400)
        self.assertIsNone(self.engine.take_tcp_data_connection(second.five_tuple, FakeLink()))

    # -- incoming connections (§5.3) -----------------------------------------

    def test_incoming_without_permission_is_refused(self) -> None:
        self.allocate()
        allocation = self.engine.manager.get(self.control.five_tuple)
        self.assertIsNone(self.engine.tcp_peer_arrived(allocation, PEER, FakeLink(), now=0.0))
        self.assertEqual(self.control.received, [])
        self.assertEqual(self.engine.counters.tcp_connections.get("refused_no_permission"), 1)

    def test_incoming_with_permission_sends_connection_attempt(self) -> None:
        self.allocate()
        self.control.create_permission(PEER[0])
        allocation = self.engine.manager.get(self.control.five_tuple)
        connection = self.engine.tcp_peer_arrived(allocation, PEER, FakeLink(), now=0.0)
        self.assertIsNotNone(connection)
        indication = msgs.decode(self.control.received[-1])
        self.assertEqual((indication.method, indication.msg_class),
                         (Method.CONNECTION_ATTEMPT, MessageClass.INDICATION))
        self.assertEqual(msgs.parse_xor_address(indication.get(AttrType.XOR_PEER_ADDRESS),
                                                indication.transaction_id), PEER)
        self.assertEqual(int.from_bytes(indication.get(AttrType.CONNECTION_ID), "big"), connection.id)
        self.assertIsNone(error_code(self.bind(self.data_client(), connection.id)))

    def test_peer_bytes_before_the_bind_are_held_then_paused(self) -> None:
        engine, opener = make_engine(tcp_relay=True, tcp_relay_buffer_bytes=1024)
        self.engine, self.opener = engine, opener
        self.control = Client(engine, transport=Transport.TCP)
        connection_id = self.connected()
        connection = engine.manager.tcp[connection_id]
        self.assertFalse(engine.tcp_peer_data(connection, b"a" * 600))
        self.assertTrue(engine.tcp_peer_data(connection, b"b" * 600))  # past the limit: pause reading
        self.assertFalse(engine.tcp_peer_data(connection, b"c"))  # paused once
        self.bind(self.data_client(), connection_id)
        taken = engine.take_tcp_data_connection(self.data_client().five_tuple, FakeLink())
        self.assertEqual(taken.release_held(), b"a" * 600 + b"b" * 600 + b"c")
        self.assertEqual(taken.release_held(), b"")

    # -- ends -----------------------------------------------------------------

    def test_the_allocation_end_closes_every_connection(self) -> None:
        connection_id = self.connected()
        data = self.data_client()
        self.bind(data, connection_id)
        client_link = FakeLink()
        self.engine.take_tcp_data_connection(data.five_tuple, client_link)
        self.control.create_permission("93.184.216.30")
        allocation = self.engine.manager.get(self.control.five_tuple)
        incoming = FakeLink()
        self.engine.tcp_peer_arrived(allocation, ("93.184.216.30", 5000), incoming, now=0.0)
        self.engine.handle_connection_lost(self.control.five_tuple, now=1.0)
        self.assertTrue(self.opener.connects[0][3].closed)
        self.assertTrue(client_link.closed)
        self.assertTrue(incoming.closed)
        self.assertEqual(self.engine.manager.tcp, {})
        self.assertEqual(self.engine.manager.tcp_data, {})
        self.assertEqual(self.engine.counters.tcp_connections_active, 0)

    def test_either_side_closing_closes_the_other(self) -> None:
        connection_id = self.connected()
        data = self.data_client()
        self.bind(data, connection_id)
        client_link = FakeLink()
        connection = self.engine.take_tcp_data_connection(data.five_tuple, client_link)
        self.engine.tcp_link_lost(connection, now=1.0)  # the peer hung up
        self.assertTrue(client_link.closed)
        self.assertEqual(connection.state, CLOSED)
        # and the other way round, through the data connection's loss
        connection_id = self._second_connection()
        data2 = self.data_client(40005)
        self.bind(data2, connection_id)
        self.engine.take_tcp_data_connection(data2.five_tuple, FakeLink())
        peer_link = self.opener.connects[-1][3]
        self.engine.handle_connection_lost(data2.five_tuple, now=2.0)
        self.assertTrue(peer_link.closed)
        self.assertIsNotNone(self.engine.manager.get(self.control.five_tuple))  # the allocation lives on

    def _second_connection(self) -> int:
        self.connect(("93.184.216.21", 9))
        connection = self.opener.connects[-1][2]
        self.engine.tcp_connect_result(connection, True, now=1.0)
        return connection.id

    def test_bytes_through_a_pipe_are_counted_and_paced_by_max_bps(self) -> None:
        engine, opener = make_engine(tcp_relay=True, max_bps=8000)  # 1000 bytes/s
        self.engine, self.opener = engine, opener
        self.control = Client(engine, transport=Transport.TCP)
        connection = engine.manager.tcp[self.connected()]
        self.assertEqual(connection.relayed(500, True, 0.0), 0.0)
        self.assertEqual(connection.relayed(500, True, 0.0), 0.0)
        self.assertAlmostEqual(connection.relayed(1000, True, 0.0), 1.0)  # a second of debt: pause 1 s
        self.assertEqual(engine.counters.bytes_to_peer, 2000)
        allocation = engine.manager.get(self.control.five_tuple)
        self.assertEqual(allocation.bytes_to_peer, 2000)
        self.assertEqual(connection.relayed(100, False, 0.0), 0.0)  # the other direction has its own budget
        self.assertEqual(engine.counters.bytes_to_client, 100)


class FramerHoldTests(unittest.TestCase):
    """The stream framer stops after a ConnectionBind: what follows may be the peer's raw bytes."""

    def bind_request(self) -> bytes:
        return msgs.encode(Method.CONNECTION_BIND, MessageClass.REQUEST, os.urandom(12),
                           [(AttrType.CONNECTION_ID, struct.pack("!I", 7))])

    def test_detach_returns_the_raw_rest(self) -> None:
        framer = StreamFramer(hold_after_connection_bind=True)
        request = self.bind_request()
        raw = b"\xff\x00GET / HTTP/1.1\r\n"  # not STUN, not ChannelData: framing would fail on it
        frames = framer.feed(request + raw[:5])
        self.assertEqual(frames, [request])
        self.assertTrue(framer.held)
        self.assertEqual(framer.feed(raw[5:]), [])
        self.assertEqual(framer.detach(), raw)

    def test_resume_frames_on_after_a_failed_bind(self) -> None:
        framer = StreamFramer(hold_after_connection_bind=True)
        request = self.bind_request()
        again = self.bind_request()
        self.assertEqual(framer.feed(request + again + again[:7]), [request])
        rest = framer.resume()
        self.assertEqual(rest, again + again[:7])
        self.assertFalse(framer.held)
        self.assertEqual(framer.feed(rest), [again])
        self.assertTrue(framer.held)

    def test_without_the_flag_nothing_is_held(self) -> None:
        framer = StreamFramer()
        request = self.bind_request()
        self.assertEqual(framer.feed(request + request), [request, request])
        self.assertFalse(framer.held)

