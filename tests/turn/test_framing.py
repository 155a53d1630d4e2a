"""Tests for :mod:`webrtcstack.turn.framing`."""

import struct

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.turn import msgs
from webrtcstack.stun.constants import AttrType, Method, MessageClass
from webrtcstack.turn.framing import FramingError, StreamFramer

STUN = msgs.encode(Method.BINDING, MessageClass.REQUEST, b"x" * 12, [(AttrType.SOFTWARE, b"abc")])


def channel(number: int, payload: bytes, pad: bool = True) -> bytes:
    raw = struct.pack("!HH", number, len(payload)) + payload
    return raw + b"\0" * (-len(payload) & 3) if pad else raw


class StreamFramerTests(SynchronousTestCase):
    def test_mixed(self) -> None:
        """STUN and padded ChannelData back to back come out as separate frames without padding."""
        framer = StreamFramer()
        frames = framer.feed(STUN + channel(0x4000, b"abcde") + STUN)
        self.assertEqual(frames, [STUN, channel(0x4000, b"abcde", pad=False), STUN])
        self.assertEqual(framer.buffered(), 0)

    def test_byte_at_a_time(self) -> None:
        """Feeding one byte at a time gives the same frames."""
        framer = StreamFramer()
        stream = channel(0x4001, b"xy") + STUN + channel(0x4002, b"1234")
        frames = []
        for i in range(len(stream)):
            frames += framer.feed(stream[i:i + 1])
        self.assertEqual(frames, [channel(0x4001, b"xy", False), STUN, channel(0x4002, b"1234")])

    def test_unpadded_channel_data(self) -> None:
        """ChannelData sent without padding is still framed (a STUN message may follow)."""
        framer = StreamFramer()
        stream = channel(0x4000, b"a", pad=False) + STUN + channel(0x4000, b"abc", pad=False) + channel(0x4001, b"z")
        self.assertEqual(framer.feed(stream), [channel(0x4000, b"a", False), STUN,
                                               channel(0x4000, b"abc", False), channel(0x4001, b"z", False)])

    def test_too_large(self) -> None:
        """A frame larger than max_frame_bytes is a framing error."""
        framer = StreamFramer(max_frame_bytes=1000)
        self.assertRaises(FramingError, framer.feed, struct.pack("!HH", 0x4000, 2000))

    def test_bad_first_byte(self) -> None:
        """A first byte of 0b10xxxxxx or 0b11xxxxxx is a framing error."""
        self.assertRaises(FramingError, StreamFramer().feed, b"\x80\x00\x00\x00")

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.booleans(), st.binary(max_size=40)), max_size=8), st.integers(1, 50))
    def test_any_split(self, items, chunk: int) -> None:
        """Any mix of frames split into any chunk size comes out whole and in order."""
        expected, stream = [], b""
        for is_stun, payload in items:
            if is_stun:
                msg = msgs.encode(Method.BINDING, MessageClass.REQUEST, b"y" * 12, [(AttrType.DATA, payload)])
                expected.append(msg)
                stream += msg
            else:
                expected.append(channel(0x4000, payload, False))
                stream += channel(0x4000, payload)
        framer = StreamFramer()
        frames = []
        for i in range(0, len(stream), chunk):
            frames += framer.feed(stream[i:i + chunk])
        self.assertEqual(frames, expected)
