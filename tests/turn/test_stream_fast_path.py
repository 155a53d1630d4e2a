"""The stream protocol's ChannelData fast path (``client_stream.TurnStreamProtocol``).

A chunk that is one ChannelData frame on a connection with an allocation goes
to the engine's ``FastPath`` without the framer's buffer or the request path;
everything else is framed and handled as before.  A ``StringTransport``
carries the bytes; fake relays record what reaches the peer.
"""

from __future__ import annotations

import struct

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.turn import msgs
from tests.turn.support import SERVER, Client, make_engine
from webrtcstack.stun.constants import MessageClass, Method
from webrtcstack.turn.adapters.client_stream import TurnStreamFactory
from webrtcstack.turn.adapters.driver import TurnDriver
from webrtcstack.turn.five_tuple import Transport

CLIENT = ("198.51.100.7", 40000)


class StreamFastPathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.opener = make_engine(max_bps=0)
        self.driver = TurnDriver(self.engine, task.Clock())
        self.factory = TurnStreamFactory(self.driver, idle_timeout_s=0)
        self.request_path: list[bytes] = []
        original = self.driver.handle_client

        def handle_client(five_tuple, data, to_client, now):  # type: ignore[no-untyped-def]
            self.request_path.append(data)
            return original(five_tuple, data, to_client, now)

        self.driver.handle_client = handle_client  # type: ignore[method-assign]

    def connect(self, client: tuple[str, int] = CLIENT) -> tuple[object, StringTransport]:
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(hostAddress=IPv4Address("TCP", *SERVER), peerAddress=IPv4Address("TCP", *client))
        protocol.makeConnection(transport)
        return protocol, transport

    def allocated(self) -> tuple[object, StringTransport]:
        client = Client(self.engine, CLIENT, transport=Transport.TCP)
        client.allocate()
        bound = client.channel_bind(0x4001, "93.184.216.34", 5000)
        assert bound.msg_class == MessageClass.SUCCESS, bound
        return self.connect()

    def test_one_frame_per_chunk_skips_the_request_path(self) -> None:
        """Once the connection is known to have an allocation, each one-frame chunk, padded or not, reaches
        the peer without the request path; the first chunk found the allocation through it."""
        protocol, _ = self.allocated()
        relay = self.opener.relays[0]
        for payload in (b"first", b"abcd", b"xyz", b"hello"):
            frame = struct.pack("!HH", 0x4001, len(payload)) + payload
            protocol.dataReceived(frame + bytes(-len(frame) % 4))  # type: ignore[attr-defined]
        self.assertEqual([d for d, _ in relay.sent], [b"first", b"abcd", b"xyz", b"hello"])
        self.assertEqual(len(self.request_path), 1)
        self.assertEqual(self.engine.counters.packets_to_peer, 4)

    def test_everything_else_is_framed_as_before(self) -> None:
        """Two frames in a chunk, a frame in two chunks, and STUN take the framer: all arrive, in order, and
        the Binding is answered."""
        protocol, transport = self.allocated()
        relay = self.opener.relays[0]
        one, two = (struct.pack("!HH", 0x4001, 4) + p for p in (b"one1", b"two2"))
        protocol.dataReceived(one)  # type: ignore[attr-defined]
        protocol.dataReceived(one + two)  # type: ignore[attr-defined]
        protocol.dataReceived(two[:3])  # type: ignore[attr-defined]
        protocol.dataReceived(two[3:])  # type: ignore[attr-defined]
        protocol.dataReceived(msgs.encode(Method.BINDING, MessageClass.REQUEST, b"b" * 12, []))  # type: ignore
        self.assertEqual([d for d, _ in relay.sent], [b"one1", b"one1", b"two2", b"two2"])
        self.assertEqual(msgs.decode(transport.value()).msg_class, MessageClass.SUCCESS)

    def test_no_allocation_still_refused(self) -> None:
        """ChannelData on a connection without an allocation closes it, as before."""
        protocol, transport = self.connect(("198.51.100.8", 40001))
        protocol.dataReceived(struct.pack("!HH", 0x4001, 4) + b"data")  # type: ignore[attr-defined]
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.engine.counters.packets_to_peer, 0)
