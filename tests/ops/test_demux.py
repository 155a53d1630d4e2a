"""The one-port TLS listener's choice between TURN and HTTP."""

from __future__ import annotations

import struct

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from webrtcstack.ops.demux import HTTP, TURN, DemuxFactory, classify

BINDING = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + b"\x00" * 12


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class TlsLikeTransport(StringTransport):
    """A StringTransport with the two TLS-transport attributes the demux uses."""

    def __init__(self, alpn: bytes | None = None) -> None:
        super().__init__()
        self.negotiatedProtocol = alpn
        self.wrappedProtocol: Protocol | None = None
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class ClassifyTests(unittest.TestCase):
    def test_alpn_decides_first(self) -> None:
        """A negotiated ALPN protocol wins over the first bytes."""
        self.assertEqual(classify(b"stun.turn", b"GET / HTTP/1.1"), TURN)
        self.assertEqual(classify(b"http/1.1", b"\x16\x03"), HTTP)

    def test_stun_bytes_win_over_alpn_http(self) -> None:
        """A STUN header after a negotiated http/1.1 (coturn's client offers it first) still goes to TURN."""
        self.assertEqual(classify(b"http/1.1", BINDING), TURN)

    def test_first_bytes_without_alpn(self) -> None:
        """With no ALPN a STUN header means TURN, an upper-case method means HTTP, anything else is refused."""
        self.assertEqual(classify(None, BINDING), TURN)
        self.assertEqual(classify(None, b"\x00"), TURN)
        for method in (b"GET", b"POST", b"OPTIONS", b"HEAD", b"DELETE"):
            self.assertEqual(classify(None, method + b" / HTTP/1.1\r\n"), HTTP)
        for junk in (b"get /", b"\x80\x00", b"\x16\x03\x01", b"\xff", b""):
            self.assertIsNone(classify(None, junk))


class DemuxProtocolTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.turn = Factory.forProtocol(Recorder)
        self.http = Factory.forProtocol(Recorder)
        self.factory = DemuxFactory(self.turn, self.http, self.clock, timeout_s=5)

    def connect(self, alpn: bytes | None = None) -> tuple[Protocol, TlsLikeTransport]:
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = TlsLikeTransport(alpn)
        transport.wrappedProtocol = proto
        proto.makeConnection(transport)
        return proto, transport

    def test_stun_goes_to_turn_and_later_bytes_bypass_the_demux(self) -> None:
        """The first STUN bytes reach a TURN protocol, which then sits in the TLS transport's slot."""
        proto, transport = self.connect()
        proto.dataReceived(BINDING)
        inner = transport.wrappedProtocol
        self.assertIsInstance(inner, Recorder)
        self.assertIsNot(inner, proto)
        self.assertEqual(inner.data, BINDING)
        self.assertIs(inner.transport, transport)
        self.assertEqual(self.factory.counts, {TURN: 1})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_alpn_http_goes_to_http(self) -> None:
        """With ALPN http/1.1 the connection goes to the HTTP site whatever the bytes."""
        proto, transport = self.connect(b"http/1.1")
        proto.dataReceived(b"GET / HTTP/1.1\r\n")
        self.assertEqual(self.factory.counts, {HTTP: 1})
        self.assertEqual(transport.wrappedProtocol.data, b"GET / HTTP/1.1\r\n")

    def test_unknown_bytes_close(self) -> None:
        """Bytes that are neither STUN nor HTTP close the connection."""
        proto, transport = self.connect()
        proto.dataReceived(b"\xff\xff")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.counts, {"unknown": 1})

    def test_silent_client_is_dropped(self) -> None:
        """A client that sends nothing is aborted when the timeout passes."""
        _, transport = self.connect()
        self.clock.advance(4.9)
        self.assertFalse(transport.aborted)
        self.clock.advance(0.2)
        self.assertTrue(transport.aborted)
        self.assertEqual(self.factory.counts, {"timeout": 1})
