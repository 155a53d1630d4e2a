"""The production UDP ChannelData fast path (``client_udp.TurnUdpListener``), with a fake socket.

The listener reads datagrams itself and hands ChannelData to the engine's
``FastPath`` (the table of bound channels) without the engine's request
path.  These tests drive that exact code: a fake socket hands it datagrams,
fake relays record what goes to the peer, and the driver's request path
fails the test if anything reaches it.
"""

from __future__ import annotations

import socket
import struct
from collections import deque

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from tests.turn.support import SERVER, Client, make_engine
from webrtcstack.stun.constants import MessageClass
from webrtcstack.turn.adapters.client_udp import TurnUdpListener
from webrtcstack.turn.adapters.driver import TurnDriver


class FakeUdpSocket:
    """Queued datagrams in, sent datagrams recorded."""

    family = socket.AF_INET

    def __init__(self) -> None:
        self.inbox: deque[tuple[bytes, tuple[str, int]]] = deque()
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def getsockname(self) -> tuple[str, int]:
        return SERVER

    def fileno(self) -> int:
        return -1

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        if not self.inbox:
            raise BlockingIOError()
        data, addr = self.inbox.popleft()
        return data[:size], addr

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.sent.append((data, addr))
        return len(data)


class UdpFastPathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.opener = make_engine(max_bps=0)
        self.clock = task.Clock()
        self.driver = TurnDriver(self.engine, self.clock)
        self.sock = FakeUdpSocket()
        self.listener = TurnUdpListener(self.driver, self.sock)  # type: ignore[arg-type]
        self.client = Client(self.engine)
        self.client.allocate()
        bound = self.client.channel_bind(0x4001, "93.184.216.34", 5000)
        assert bound.msg_class == MessageClass.SUCCESS, bound  # the channel is in the fast-path table now
        self.relay = self.opener.relays[0]
        self.slow_path: list[bytes] = []
        original = self.driver.handle_message

        def handle_message(five_tuple, data, to_client, now):  # type: ignore[no-untyped-def]
            self.slow_path.append(data)
            return original(five_tuple, data, to_client, now)

        self.driver.handle_message = handle_message  # type: ignore[method-assign]

    def datagram(self, data: bytes) -> None:
        self.sock.inbox.append((data, self.client.five_tuple.client))
        self.listener.doRead()

    def test_bound_channel_goes_to_the_peer(self) -> None:
        """ChannelData on a bound channel reaches its peer, with the counters and the allocation's bytes."""
        self.datagram(struct.pack("!HH", 0x4001, 5) + b"hello" + b"\0\0\0")
        self.assertEqual(self.relay.sent, [(b"hello", ("93.184.216.34", 5000))])
        self.assertEqual(self.slow_path, [])  # not through the engine's request path
        self.assertEqual((self.engine.counters.packets_to_peer, self.engine.counters.bytes_to_peer), (1, 5))
        (allocation,) = self.engine.manager.allocations.values()
        self.assertEqual(allocation.bytes_to_peer, 5)
        self.assertEqual(self.sock.sent, [])

    def test_the_allocation_keeps_few_instance_attributes(self) -> None:
        """A bound allocation on the fast path has at most 29 instance attributes: past that CPython stops
        sharing the attribute table between instances and every attribute read per packet gets slower
        (allocation.py says which features keep class-level defaults instead; bench/turn_micro.py under callgrind measures it)."""
        self.datagram(struct.pack("!HH", 0x4001, 5) + b"hello" + b"\0\0\0")
        (allocation,) = self.engine.manager.allocations.values()
        self.assertLessEqual(len(vars(allocation)), 29, sorted(vars(allocation)))

    def test_unbound_channel_and_short_length_are_dropped(self) -> None:
        """An unbound channel number, or a length past the datagram, sends nothing and is counted."""
        self.datagram(struct.pack("!HH", 0x4002, 2) + b"hi")
        self.datagram(struct.pack("!HH", 0x4001, 50) + b"short")
        self.assertEqual(self.relay.sent, [])
        self.assertEqual(self.slow_path, [])
        self.assertEqual(self.engine.counters.dropped.get("no_channel"), 1)
        self.assertEqual(self.engine.counters.dropped.get("malformed"), 1)

    def test_bandwidth_bucket_applies(self) -> None:
        """With max_bps the fast path takes from the allocation's bucket and drops what it cannot pay for."""
        (allocation,) = self.engine.manager.allocations.values()
        from webrtcstack.limits import TokenBucket

        allocation.bucket_to_peer = TokenBucket(8 * 10, 8 * 10, self.clock.seconds())  # 10 bytes
        self.datagram(struct.pack("!HH", 0x4001, 8) + b"12345678")
        self.datagram(struct.pack("!HH", 0x4001, 8) + b"abcdefgh")
        self.assertEqual([d for d, _ in self.relay.sent], [b"12345678"])
        self.assertEqual(self.slow_path, [])
        self.assertEqual(self.engine.counters.dropped.get("bandwidth"), 1)

    def test_stun_still_answered_on_the_same_socket(self) -> None:
        """A Binding request on the listener is answered through the engine's one Binding handler."""
        from tests.turn import msgs
        from webrtcstack.stun.constants import Method

        self.datagram(msgs.encode(Method.BINDING, MessageClass.REQUEST, b"b" * 12, []))
        (reply, to), = self.sock.sent
        self.assertEqual(to, self.client.five_tuple.client)
        self.assertEqual(msgs.decode(reply).msg_class, MessageClass.SUCCESS)
        self.assertEqual(self.engine.binding.counters.responses, 1)

    def test_binding_skips_the_request_path(self) -> None:
        """A Binding request goes straight to the Binding handler: no per-client sender is made, the
        request path is not entered, the timer is not re-armed; a malformed one is dropped and counted."""
        from tests.turn import msgs
        from webrtcstack.stun.constants import Method

        rearmed: list[None] = []
        self.driver.rearm = lambda: rearmed.append(None)  # type: ignore[method-assign]
        senders = dict(self.listener._senders)
        self.sock.inbox.append((msgs.encode(Method.BINDING, MessageClass.REQUEST, b"c" * 12, []), ("198.51.100.9", 7)))
        self.datagram(b"\x00\x01\x00\x04" + bytes(16))  # no magic cookie, and a length past the end
        self.assertEqual([to for _, to in self.sock.sent], [("198.51.100.9", 7)])
        self.assertEqual((self.slow_path, rearmed, self.listener._senders), ([], [], senders))
        self.assertEqual(self.engine.counters.dropped.get("malformed"), 1)

    def test_send_error_is_counted_not_raised(self) -> None:
        """A relay socket that refuses the datagram (full buffer, ICMP error) costs a send_error, nothing else."""
        def refuse(data: bytes, peer: tuple[str, int]) -> int:
            raise BlockingIOError()

        self.relay.sendto = refuse  # type: ignore[method-assign]
        self.datagram(struct.pack("!HH", 0x4001, 2) + b"hi\0\0")
        self.assertEqual(self.engine.counters.dropped.get("send_error"), 1)
        self.assertEqual(self.engine.counters.packets_to_peer, 0)
        self.assertEqual(self.slow_path, [])
