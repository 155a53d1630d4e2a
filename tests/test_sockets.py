"""Listener helpers: v6-only sockets and the shared connection budget."""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from webrtcstack.config import Endpoint
from webrtcstack.sockets import ConnectionBudget, LimitedFactory, ListenerService, make_socket


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


@defer.inlineCallbacks
def wait_for(predicate, timeout_s: float = 5.0):  # type: ignore[no-untyped-def]
    """Spin the reactor until predicate() is true (bounded)."""
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return True
        yield task.deferLater(reactor, 0.01, lambda: None)
    return predicate()


class ConnectionBudgetTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_connections_beyond_the_budget_are_closed(self) -> None:
        """With a budget of 2 shared by two listeners, a third connection is closed at once and a freed place is reusable."""
        budget = ConnectionBudget(2)
        factory = Factory.forProtocol(Echo)
        services = [ListenerService(reactor, "tcp", Endpoint("127.0.0.1", 0), LimitedFactory(factory, budget))
                    for _ in range(2)]
        for svc in services:
            svc.startService()
            self.addCleanup(svc.stopService)
        ports = [svc.bound_port() for svc in services]
        clients = []
        for port in (ports[0], ports[1]):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            self.addCleanup(c.close)
            clients.append(c)
        yield wait_for(lambda: budget.open == 2)
        self.assertEqual(budget.open, 2)
        extra = socket.create_connection(("127.0.0.1", ports[0]), timeout=5)
        self.addCleanup(extra.close)
        extra.setblocking(False)

        def closed() -> bool:
            try:
                return extra.recv(16) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True

        self.assertTrue((yield wait_for(closed)), "the connection over budget stayed open")
        self.assertEqual(budget.refused, 1)
        clients[0].close()
        yield wait_for(lambda: budget.open == 1)
        self.assertEqual(budget.open, 1)
        again = socket.create_connection(("127.0.0.1", ports[1]), timeout=5)
        self.addCleanup(again.close)
        again.sendall(b"ping")
        again.setblocking(False)
        got = []

        def echoed() -> bool:
            try:
                got.append(again.recv(16))
            except BlockingIOError:
                return False
            return True

        yield wait_for(echoed)
        self.assertEqual(got, [b"ping"])
        for c in clients[1:] + [again]:
            c.close()
        yield wait_for(lambda: budget.open == 0)


class SocketTests(unittest.TestCase):
    def test_ipv6_sockets_are_v6_only(self) -> None:
        """An IPv6 socket is IPV6_V6ONLY, so 0.0.0.0:P and [::]:P can both be bound."""
        with make_socket(socket.SOCK_DGRAM, "::", 0) as s6:
            self.assertEqual(s6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 1)
            port = s6.getsockname()[1]
            with make_socket(socket.SOCK_DGRAM, "0.0.0.0", port) as s4:
                self.assertEqual(s4.getsockname()[1], port)
