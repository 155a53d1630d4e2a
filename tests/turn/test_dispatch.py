"""The epoll reactor's dispatch for the relay's own sockets (``turn.adapters.dispatch``).

Each test makes its own ``EPollReactor`` instance (never run, never
installed) and drives one ``doIteration`` at a time over a real UDP socket
pair on loopback.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import task
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.selectreactor import SelectReactor
from twisted.python import context, log
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.turn.adapters import dispatch


class _Reader:
    """A UDP socket read as a descriptor; records what it read and the legacy log context it ran in."""

    def __init__(self, sock: socket.socket, fail: bool = False) -> None:
        self.sock = sock
        self.fail = fail
        self.read: list[bytes] = []
        self.systems: list[Any] = []
        self.lost: list[Any] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.systems.append((context.get(log.ILogContext) or {}).get("system"))
        self.read.append(self.sock.recv(2048))
        if self.fail:
            raise RuntimeError("a bug in doRead")

    def connectionLost(self, reason: Any) -> None:
        self.lost.append(reason)

    def logPrefix(self) -> str:
        return "ReaderPrefix"


class _Direct(_Reader):
    """Registered for direct dispatch (a class of its own: registration is by exact class)."""


class DispatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = EPollReactor()
        self.addCleanup(self.close_reactor)
        self.sender = self.udp()

    def close_reactor(self) -> None:
        self.reactor._poller.close()
        waker = getattr(self.reactor, "waker", None)
        if waker is not None:
            waker.connectionLost(None)

    def udp(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        self.addCleanup(sock.close)
        return sock

    def reader(self, kind: type, **kw: Any) -> Any:
        reader = kind(self.udp(), **kw)
        self.reactor.addReader(reader)
        return reader

    def send_and_poll(self, *readers: Any) -> None:
        for reader in readers:
            self.sender.sendto(b"datagram", reader.sock.getsockname())
        for _ in range(20):  # loopback delivers at once; a few polls at most
            self.reactor.doIteration(0.05)
            if all(reader.read or reader.lost for reader in readers):
                return
        self.fail("the datagrams were not read")

    def test_registered_kinds_skip_the_log_context_others_keep_it(self) -> None:
        """A registered class's doRead runs without the legacy log context; any other class still gets
        its logPrefix as the context's ``system`` (served by callWithLogger, as before)."""
        self.assertTrue(dispatch.register(self.reactor, _Direct))
        direct, plain = self.reader(_Direct), self.reader(_Reader)
        self.send_and_poll(direct, plain)
        self.assertEqual(direct.read, [b"datagram"])
        self.assertEqual(plain.read, [b"datagram"])
        self.assertNotEqual(direct.systems, ["ReaderPrefix"])
        self.assertEqual(plain.systems, ["ReaderPrefix"])
        self.assertTrue(dispatch.is_direct(self.reactor, direct))
        self.assertFalse(dispatch.is_direct(self.reactor, plain))

    def test_without_registration_every_descriptor_keeps_the_context(self) -> None:
        direct = self.reader(_Direct)
        self.send_and_poll(direct)
        self.assertEqual(direct.systems, ["ReaderPrefix"])
        self.assertFalse(dispatch.is_direct(self.reactor, direct))

    def test_an_error_in_doread_disconnects_as_before_and_the_loop_goes_on(self) -> None:
        """An exception escaping a registered descriptor's doRead is logged and the descriptor is
        disconnected (Twisted's own handling); the other descriptors are still served."""
        dispatch.register(self.reactor, _Direct)
        broken, other = self.reader(_Direct, fail=True), self.reader(_Direct)
        self.send_and_poll(broken, other)
        self.assertEqual(len(broken.lost), 1)
        self.assertNotIn(broken.sock.fileno(), self.reactor._selectables)
        self.assertEqual(other.read, [b"datagram"])
        self.assertEqual(other.lost, [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_registration_is_idempotent_and_keeps_one_loop(self) -> None:
        dispatch.register(self.reactor, _Direct)
        loop = self.reactor.doIteration
        dispatch.register(self.reactor, _Direct)
        dispatch.register(self.reactor, _Reader)
        self.assertIs(self.reactor.doIteration, loop)
        plain = self.reader(_Reader)
        self.send_and_poll(plain)
        self.assertNotEqual(plain.systems, ["ReaderPrefix"])

    def test_other_reactors_are_left_alone(self) -> None:
        """A select reactor or a task.Clock is not changed, and register says so."""
        clock = task.Clock()
        self.assertFalse(dispatch.register(clock, _Direct))
        self.assertFalse(hasattr(clock, "doIteration"))
        select = SelectReactor()
        try:
            loop = select.doIteration
            self.assertFalse(dispatch.register(select, _Direct))
            self.assertEqual(select.doIteration, loop)
        finally:
            select.waker.connectionLost(None)


class StackRegistersTests(unittest.TestCase):
    """The running stack serves its UDP listeners and relay sockets directly (trial's reactor is epoll)."""

    @defer.inlineCallbacks
    def test_listener_and_relays_are_served_directly(self) -> Any:
        from twisted.internet import reactor

        from tests.turn.stack import TurnStack
        from webrtcstack.turn.adapters.client_udp import TurnUdpService
        from webrtcstack.turn.adapters.client_stream import TurnTcpServer
        from webrtcstack.turn.adapters.relay import RelayReader

        self.assertIsInstance(reactor, EPollReactor)
        stack = TurnStack()
        stack.start()
        try:
            (udp,) = [s for s in stack.top if isinstance(s, TurnUdpService)]
            self.assertTrue(dispatch.is_direct(reactor, udp.listener))
            self.assertTrue(dispatch.is_direct(reactor, object.__new__(RelayReader)))
            # A TCP client's connection: Twisted's transport under the TURN class, served directly.
            client = socket.create_connection(("127.0.0.1", stack.port))
            self.addCleanup(client.close)
            for _ in range(100):  # bounded: until the accept is served
                transports = [t for t in reactor.getReaders() if isinstance(t, TurnTcpServer)]
                if transports:
                    break
                yield deferLater(reactor, 0.01, lambda: None)
            self.assertEqual(len(transports), 1)
            self.assertIs(type(transports[0]), TurnTcpServer)
            self.assertTrue(dispatch.is_direct(reactor, transports[0]))
        finally:
            yield stack.stop()
