# -*- test-case-name: tests.stun.test_framing -*-
"""Tests for webrtcstack.stun.framing: STUN and ChannelData frames cut from a stream."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from tests.stun.strategies import DETERMINISTIC, attribute_lists, transaction_ids
from webrtcstack.stun import Message, MessageClass, Method, StreamFramer, StunDecodeError, encode


def channel_data(channel: int, data: bytes) -> bytes:
    """A ChannelData frame without padding (the datagram form)."""
    return struct.pack("!HH", channel, len(data)) + data


def padded(frame: bytes) -> bytes:
    """The stream form of a ChannelData frame (RFC 8656 §12.5)."""
    return frame + bytes(-len(frame) % 4)


STUN = encode(Message(Method.BINDING, MessageClass.REQUEST, bytes(range(12))))


class StreamFramerTests(unittest.SynchronousTestCase):
    """Examples."""

    def test_whole_and_split(self) -> None:
        """Two STUN messages in one chunk come out as two frames; a split one waits for its end."""
        framer = StreamFramer()
        self.assertEqual(framer.feed(STUN + STUN[:7]), [STUN])
        self.assertEqual(framer.buffered, 7)
        self.assertEqual(framer.feed(STUN[7:]), [STUN])
        self.assertEqual(framer.buffered, 0)

    def test_channel_data_padding_consumed(self) -> None:
        """ChannelData comes out without its stream padding, and the next frame starts after it."""
        frame = channel_data(0x4001, b"hello")
        framer = StreamFramer()
        self.assertEqual(framer.feed(padded(frame) + STUN), [frame, STUN])

    def test_channel_data_waits_for_padding(self) -> None:
        """A ChannelData frame is not handed out until its padding has arrived."""
        frame = channel_data(0x4001, b"hello")
        framer = StreamFramer()
        self.assertEqual(framer.feed(frame), [])
        self.assertEqual(framer.feed(b"\x00\x00\x00"), [frame])

    def test_empty_channel_data(self) -> None:
        """A zero-length ChannelData frame is its 4-byte header."""
        self.assertEqual(StreamFramer().feed(channel_data(0x7FFF, b"")), [channel_data(0x7FFF, b"")])

    def test_garbage_first_bits(self) -> None:
        """A frame starting with bits 10 or 11 is refused at once, and the framer stays failed."""
        framer = StreamFramer()
        self.assertRaises(StunDecodeError, framer.feed, b"\x80")
        self.assertRaises(StunDecodeError, framer.feed, STUN)

    def test_bad_stun_length(self) -> None:
        """A STUN length that is not a multiple of 4 is refused."""
        self.assertRaises(StunDecodeError, StreamFramer().feed, b"\x00\x01\x00\x02")

    def test_oversize(self) -> None:
        """A frame announcing more than max_frame_size is refused before its body arrives."""
        framer = StreamFramer(max_frame_size=100)
        self.assertRaises(StunDecodeError, framer.feed, b"\x00\x01\x00\x54")  # 20 + 84 = 104
        self.assertEqual(StreamFramer(max_frame_size=104).feed(b"\x00\x01\x00\x54"), [])
        self.assertRaises(StunDecodeError, StreamFramer(max_frame_size=100).feed, b"\x40\x00\x00\x61")

    def test_max_frame_size_minimum(self) -> None:
        """A limit below a STUN header is a configuration error."""
        self.assertRaises(ValueError, StreamFramer, 10)

    def test_many_small_feeds_linear(self) -> None:
        """Feeding a 64 KiB ChannelData frame one byte at a time keeps the buffer to that one frame."""
        frame = channel_data(0x4000, bytes(65532))
        framer = StreamFramer()
        out: list[bytes] = []
        for i in range(len(frame)):
            out += framer.feed(frame[i:i + 1])
        self.assertEqual(out, [frame])
        self.assertEqual(framer.buffered, 0)


stun_frames = st.tuples(st.sampled_from(list(Method)), transaction_ids.filter(lambda t: len(t) == 12),
                        attribute_lists).map(lambda a: encode(Message(a[0], MessageClass.REQUEST, a[1], a[2])))
channel_frames = st.tuples(st.integers(0x4000, 0x7FFF), st.binary(max_size=40)).map(lambda a: channel_data(*a))
frames = st.lists(st.one_of(stun_frames, channel_frames), min_size=1, max_size=6)


class StreamFramerPropertyTests(unittest.SynchronousTestCase):
    """Hypothesis properties."""

    @DETERMINISTIC
    @given(frames, st.lists(st.integers(0, 400), max_size=10))
    def test_chunking_does_not_matter(self, expected: list[bytes], cuts: list[int]) -> None:
        """However the stream is split, the same frames come out in the same order."""
        stream = b"".join(padded(f) for f in expected)
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
        framer = StreamFramer()
        out: list[bytes] = []
        for start, end in zip(points, points[1:]):
            out += framer.feed(stream[start:end])
        self.assertEqual(out, expected)
        self.assertEqual(framer.buffered, 0)

    @DETERMINISTIC
    @given(st.binary(max_size=200))
    def test_any_bytes_only_stun_decode_error(self, data: bytes) -> None:
        """Arbitrary bytes produce frames or StunDecodeError, nothing else, and frames never exceed the limit."""
        framer = StreamFramer(max_frame_size=64)
        try:
            for frame in framer.feed(data):
                self.assertLessEqual(len(frame), 64)
        except StunDecodeError:
            pass
