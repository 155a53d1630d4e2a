"""Tests for the TURN driver's logging of authentication failures (no sockets; time is a Clock)."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.turn.adapters import driver as driver_module
from webrtcstack.turn.adapters.driver import TurnDriver

from webrtcstack.stun.constants import Method

from .support import Client, make_engine


class AuthFailureLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.patch(driver_module, "log", Logger(observer=self.events.append))
        self.clock = Clock()
        self.engine, _ = make_engine()
        self.driver = TurnDriver(self.engine, self.clock, log_interval_s=10.0)

    def lines(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("reason") == reason]

    def test_one_line_per_reason_per_interval(self) -> None:
        """Many failures with one reason log one warning per interval, the next one saying how many were suppressed."""
        for i in range(5):
            Client(self.engine, client=("198.51.100.7", 41000 + i), password="wrong").allocate(now=self.clock.seconds())
        self.assertEqual(len(self.lines("bad_integrity")), 1)
        first = self.lines("bad_integrity")[0]
        self.assertEqual((first["log_level"], first["suppressed"], first["client"]),
                         (LogLevel.warn, 0, "198.51.100.7"))
        self.clock.advance(10)
        Client(self.engine, client=("198.51.100.8", 1), password="wrong").allocate(now=self.clock.seconds())
        self.assertEqual([e["suppressed"] for e in self.lines("bad_integrity")], [0, 4])

    def test_reasons_are_separate(self) -> None:
        """Each reason gets its own line; the routine 401 challenge is logged at debug only."""
        Client(self.engine, password="wrong").allocate()
        Client(self.engine, client=("198.51.100.9", 1), username="mallory").allocate()
        self.assertEqual(len(self.lines("bad_integrity")), 1)
        self.assertEqual(len(self.lines("unknown_user")), 1)
        self.assertEqual({e["log_level"] for e in self.lines("no_credentials")}, {LogLevel.debug})
        self.assertFalse([e for e in self.events if e["log_level"] >= LogLevel.info
                          and e.get("reason") == "no_credentials"])


class HandleMessageTests(SynchronousTestCase):
    def test_reply_returned_not_sent(self) -> None:
        """handle_message returns the reply for the caller to send (the UDP listener batches them)."""
        clock = Clock()
        engine, _ = make_engine()
        driver = TurnDriver(engine, clock)
        client = Client(engine)
        sent: list[bytes] = []
        reply = driver.handle_message(client.five_tuple, client.build(Method.ALLOCATE, [], sign=False), sent.append,
                                      clock.seconds())
        self.assertIsNotNone(reply)
        self.assertEqual(sent, [])

    def test_handle_client_sends(self) -> None:
        """handle_client sends the reply itself, and says False for malformed bytes (counted)."""
        clock = Clock()
        engine, _ = make_engine()
        driver = TurnDriver(engine, clock)
        client = Client(engine)
        sent: list[bytes] = []
        self.assertTrue(driver.handle_client(client.five_tuple, client.build(Method.ALLOCATE, [], sign=False),
                                             sent.append, clock.seconds()))
        self.assertEqual(len(sent), 1)
        self.assertFalse(driver.handle_client(client.five_tuple, b"\x00\x03\x00", sent.append, clock.seconds()))
        self.assertEqual(engine.counters.dropped.get("malformed"), 1)


class UdpListenerBatchTests(SynchronousTestCase):
    def test_every_reply_of_a_wakeup_is_sent_in_order(self) -> None:
        """Requests queued on the listener socket are each answered, in order, across several flushes."""
        import socket

        from webrtcstack.turn.adapters.client_udp import REPLIES_PER_FLUSH, TurnUdpListener

        clock = Clock()
        engine, _ = make_engine(unauthenticated_replies_per_second=1000)
        driver = TurnDriver(engine, clock)
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(client.close)
        client.bind(("127.0.0.1", 0))
        client.settimeout(5)
        listener = TurnUdpListener(driver, server)
        self.addCleanup(server.close)
        helper = Client(engine)
        count = REPLIES_PER_FLUSH * 2 + 3
        requests = [helper.build(Method.ALLOCATE, [], sign=False) for _ in range(count)]
        for request in requests:
            client.sendto(request, server.getsockname())
        listener.doRead()
        replies = [client.recv(2048) for _ in range(count)]
        self.assertEqual([r[8:20] for r in replies], [r[8:20] for r in requests])
        self.assertEqual({r[:2] for r in replies}, {b"\x01\x13"})
        self.assertEqual(listener.failures, 0)
