"""The signaling socket's direct send (``SignalingServerProtocol._write``) never overtakes Twisted's buffer."""

from __future__ import annotations

import socket

from twisted.internet import reactor, tcp
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from webrtcstack.signaling.protocol import SignalingServerProtocol


class DirectWriteTests(TestCase):
    def setUp(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        for s in (self.ours, self.theirs):
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.conn = tcp.Connection(self.ours, Protocol(), reactor)
        self.conn.connected = True
        self.proto = SignalingServerProtocol.__new__(SignalingServerProtocol)
        self.proto.transport = self.conn
        self.proto._raw_transport = self.conn
        self.proto._raw_socket = self.ours
        self.addCleanup(self.close)

    def close(self) -> None:
        self.conn.stopWriting()
        self.ours.close()
        self.theirs.close()

    def read_all(self) -> bytes:
        got = b""
        while True:
            try:
                chunk = self.theirs.recv(65536)
            except BlockingIOError:
                return got
            if not chunk:
                return got
            got += chunk

    def test_sends_at_once_when_nothing_waits(self) -> None:
        """With an empty buffer the bytes leave in the call itself (no reactor turn, nothing buffered)."""
        self.proto._write(b"hello")
        self.assertEqual(self.read_all(), b"hello")
        self.assertFalse(self.conn.dataBuffer or self.conn._tempDataBuffer)

    def test_later_bytes_wait_behind_buffered_ones(self) -> None:
        """Once part of a write waits in Twisted's buffer, later writes queue behind it even when the
        kernel has room again, so the peer reads everything in order."""
        first = b"A" * 200_000
        self.proto._write(first)  # the kernel takes a little; the rest waits in Twisted's buffer
        self.assertTrue(self.conn.dataBuffer or self.conn._tempDataBuffer)
        early = self.read_all()  # the kernel has room again, Twisted's buffer still holds the rest
        self.proto._write(b"B")
        got = early
        for _ in range(1000):
            self.conn.doWrite()
            got += self.read_all()
            if len(got) == len(first) + 1:
                break
        self.assertEqual(got, first + b"B")
