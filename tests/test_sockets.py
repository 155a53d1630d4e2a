"""Listener helpers: v6-only sockets and the shared connection budget."""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from tests.support import Event, after_each_call, recv_within

from webrtcstack.config import Endpoint
from webrtcstack.sockets import ConnectionBudget, LimitedFactory, ListenerService, make_socket


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


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
        opened = Event(lambda: budget.open == 2)
        for svc in services:
            self.addCleanup(after_each_call(svc.target, "registerProtocol", opened))
        clients = []
        for port in (ports[0], ports[1]):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            self.addCleanup(c.close)
            clients.append(c)
        yield opened.wait(5)
        extra = socket.create_connection(("127.0.0.1", ports[0]), timeout=5)
        self.addCleanup(extra.close)
        extra.setblocking(False)
        try:
            data, _ = yield recv_within(extra, 5)
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"", "the connection over budget stayed open")
        self.assertEqual(budget.refused, 1)
        freed = Event(lambda: budget.open == 1)
        for svc in services:
            self.addCleanup(after_each_call(svc.target, "unregisterProtocol", freed))
        clients[0].close()
        yield freed.wait(5)
        again = socket.create_connection(("127.0.0.1", ports[1]), timeout=5)
        self.addCleanup(again.close)
        again.sendall(b"ping")
        again.setblocking(False)
        got, _ = yield recv_within(again, 5)
        self.assertEqual(got, b"ping")
        all_closed = Event(lambda: budget.open == 0)
        for svc in services:
            self.addCleanup(after_each_call(svc.target, "unregisterProtocol", all_closed))
        for c in clients[1:] + [again]:
            c.close()
        yield all_closed.wait(5)


class SocketTests(unittest.TestCase):
    def test_ipv6_sockets_are_v6_only(self) -> None:
        """An IPv6 socket is IPV6_V6ONLY, so 0.0.0.0:P and [::]:P can both be bound."""
        with make_socket(socket.SOCK_DGRAM, "::", 0) as s6:
            self.assertEqual(s6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 1)
            port = s6.getsockname()[1]
            with make_socket(socket.SOCK_DGRAM, "0.0.0.0", port) as s4:
                self.assertEqual(s4.getsockname()[1], port)
