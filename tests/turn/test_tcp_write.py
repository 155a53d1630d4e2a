"""``TurnTcpServer.write``: a TURN client's TCP connection sends at once when nothing waits.

Real TCP sockets on loopback; the reactor is a ``MemoryReactor``, so the
tests see exactly when the transport asks to be watched for writability
(Twisted's buffered path) and drive ``doWrite`` themselves.
"""

from __future__ import annotations

import socket

from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Server
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.turn.adapters.client_stream import TurnTcpServer


class TurnTcpWriteTests(SynchronousTestCase):
    def connect(self, kind: type[Server] = TurnTcpServer) -> tuple[Server, socket.socket, MemoryReactor]:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            client = socket.create_connection(listener.getsockname(), timeout=5)
            accepted, address = listener.accept()
        self.addCleanup(client.close)
        self.addCleanup(accepted.close)
        reactor = MemoryReactor()
        transport = kind(accepted, Protocol(), address, None, 0, reactor)  # type: ignore[arg-type]
        return transport, client, reactor

    def receive(self, client: socket.socket, n: int) -> bytes:
        got = b""
        while len(got) < n:
            chunk = client.recv(n - len(got))
            if not chunk:
                break
            got += chunk
        return got

    def test_sent_at_once(self) -> None:
        """With nothing buffered, ``write`` sends: the bytes are there and the reactor was never asked to
        watch the socket (Twisted's own ``Server`` asks, and sends only on the next ``doWrite``)."""
        transport, client, reactor = self.connect()
        transport.write(b"\x40\x00\x00\x05hello\0\0\0")
        transport.write(b"again")
        self.assertEqual(self.receive(client, 17), b"\x40\x00\x00\x05hello\0\0\0again")
        self.assertEqual(reactor.getWriters(), [])

        twisted_server, _, twisted_reactor = self.connect(Server)
        twisted_server.write(b"x")
        self.assertEqual(twisted_reactor.getWriters(), [twisted_server])  # what the override saves

    def test_what_the_socket_does_not_take_is_buffered_in_order(self) -> None:
        """Past the socket's buffer the rest goes through Twisted's buffer; a later write queues behind it
        rather than overtaking it; ``doWrite`` sends it all, in order, and stops watching."""
        transport, client, reactor = self.connect()
        transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = bytes(range(256)) * 8192  # 2 MiB: more than loopback's buffers hold unread
        transport.write(big)
        self.assertEqual(reactor.getWriters(), [transport])
        transport.write(b"tail")
        expected = big + b"tail"
        got = bytearray()
        client.settimeout(0.05)
        for _ in range(100_000):  # bounded: each round sends or reads something until all is there
            transport.doWrite()
            try:
                got += client.recv(1 << 20)
            except TimeoutError:
                pass
            if len(got) >= len(expected):
                break
        self.assertEqual(bytes(got), expected)
        self.assertEqual(reactor.getWriters(), [])
        transport.write(b"after")  # drained: direct again
        client.settimeout(5)
        self.assertEqual(self.receive(client, 5), b"after")
        self.assertEqual(reactor.getWriters(), [])

    def test_closed_or_closing_is_twisteds(self) -> None:
        """After ``loseConnection`` (and once lost), writes follow Twisted's rules, not a direct send."""
        transport, client, reactor = self.connect()
        transport.loseConnection()
        transport.write(b"late")  # buffered behind the close, as Twisted does: nothing sent yet
        client.setblocking(False)
        self.assertRaises(BlockingIOError, client.recv, 16)
        transport.doWrite()
        client.setblocking(True)
        client.settimeout(5)
        self.assertEqual(self.receive(client, 4), b"late")
        self.assertRaises(TypeError, transport.write, "text")  # type: ignore[arg-type]
