# -*- test-case-name: tests.stun.test_framing -*-
"""Tests for webrtcstack.stun.framing: STUN and ChannelData frames cut from a stream.

The framer runs in two modes: strict (RFC 8656 §12.5, ChannelData padding
required) and the server's default, which also accepts ChannelData sent
without its padding.  Behaviour both share is checked in both.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from tests.stun.strategies import DETERMINISTIC, attribute_lists, transaction_ids
from webrtcstack.stun import AttrType, Message, MessageClass, Method, StreamFramer, StunDecodeError, encode
from webrtcstack.stun.framing import DEFAULT_MAX_FRAME_BYTES


def channel_data(channel: int, data: bytes) -> bytes:
    """A ChannelData frame without padding (the datagram form)."""
    return struct.pack("!HH", channel, len(data)) + data


def padded(frame: bytes) -> bytes:
    """The stream form of a ChannelData frame (RFC 8656 §12.5)."""
    return frame + bytes(-len(frame) % 4)


def strict(max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> StreamFramer:
    """A framer that requires the ChannelData padding."""
    return StreamFramer(max_frame_bytes, accept_unpadded_channel_data=False)


def both(max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> tuple[StreamFramer, StreamFramer]:
    """A tolerant (default) and a strict framer, for behaviour the two modes share."""
    return StreamFramer(max_frame_bytes), strict(max_frame_bytes)


STUN = encode(Message(Method.BINDING, MessageClass.REQUEST, bytes(range(12))))
STUN_WITH_SOFTWARE = encode(Message(Method.BINDING, MessageClass.REQUEST, b"x" * 12, ((AttrType.SOFTWARE, b"abc"),)))


class StreamFramerTests(unittest.SynchronousTestCase):
    """Examples, in both modes unless the test names one."""

    def test_default_mode(self) -> None:
        """The default framer accepts unpadded ChannelData; strict is asked for."""
        self.assertTrue(StreamFramer().accept_unpadded_channel_data)
        self.assertFalse(strict().accept_unpadded_channel_data)

    def test_whole_and_split(self) -> None:
        """Two STUN messages in one chunk come out as two frames; a split one waits for its end."""
        for framer in both():
            self.assertEqual(framer.feed(STUN + STUN[:7]), [STUN])
            self.assertEqual(framer.buffered, 7)
            self.assertEqual(framer.feed(STUN[7:]), [STUN])
            self.assertEqual(framer.buffered, 0)

    def test_channel_data_padding_consumed(self) -> None:
        """ChannelData comes out without its stream padding, and the next frame starts after it."""
        frame = channel_data(0x4001, b"hello")
        for framer in both():
            self.assertEqual(framer.feed(padded(frame) + STUN), [frame, STUN])
            self.assertEqual(framer.buffered, 0)

    def test_channel_data_waits_for_padding(self) -> None:
        """Strict: a ChannelData frame is not handed out until its padding has arrived."""
        frame = channel_data(0x4001, b"hello")
        framer = strict()
        self.assertEqual(framer.feed(frame), [])
        self.assertEqual(framer.feed(b"\x00\x00\x00"), [frame])

    def test_tolerant_channel_data_before_padding(self) -> None:
        """Tolerant: ChannelData comes out at once; the padding is held until what follows tells it apart."""
        frame = channel_data(0x4001, b"hello")
        framer = StreamFramer()
        self.assertEqual(framer.feed(frame), [frame])
        self.assertEqual(framer.feed(b"\x00\x00\x00"), [])
        self.assertEqual(framer.buffered, 3)
        self.assertEqual(framer.feed(padded(frame)), [frame])

    def test_tolerant_zero_then_unpadded_stun(self) -> None:
        """Tolerant: a zero after unpadded ChannelData starts a STUN message if the magic cookie says so."""
        frame = channel_data(0x4001, b"abc")  # one byte of padding due
        self.assertEqual(STUN[0], 0)
        framer = StreamFramer()
        self.assertEqual(framer.feed(frame + STUN[:7]), [frame])
        self.assertEqual(framer.feed(STUN[7:]), [STUN])
        self.assertEqual(framer.buffered, 0)

    def test_tolerant_padding_then_stun(self) -> None:
        """Tolerant: zeros followed by a STUN message without the cookie at their offset are padding."""
        frame = channel_data(0x4001, b"abc")
        self.assertEqual(StreamFramer().feed(padded(frame) + STUN), [frame, STUN])

    def test_empty_channel_data(self) -> None:
        """A zero-length ChannelData frame is its 4-byte header."""
        for framer in both():
            self.assertEqual(framer.feed(channel_data(0x7FFF, b"")), [channel_data(0x7FFF, b"")])

    def test_garbage_first_bits(self) -> None:
        """A frame starting with bits 10 or 11 is refused at once, and the framer stays failed."""
        for framer in both():
            self.assertRaises(StunDecodeError, framer.feed, b"\x80")
            self.assertRaises(StunDecodeError, framer.feed, STUN)
            self.assertEqual(framer.buffered, 0)

    def test_garbage_after_unpadded_channel_data(self) -> None:
        """Tolerant: a non-zero byte where padding was due starts a frame, checked like any other."""
        framer = StreamFramer()
        self.assertRaises(StunDecodeError, framer.feed, channel_data(0x4000, b"a") + b"\xc0")
        self.assertRaises(StunDecodeError, framer.feed, STUN)

    def test_bad_stun_length(self) -> None:
        """A STUN length that is not a multiple of 4 is refused."""
        for framer in both():
            self.assertRaises(StunDecodeError, framer.feed, b"\x00\x01\x00\x02")

    def test_oversize(self) -> None:
        """A frame announcing more than max_frame_bytes is refused before its body arrives."""
        for framer in both(max_frame_bytes=100):
            self.assertRaises(StunDecodeError, framer.feed, b"\x00\x01\x00\x54")  # 20 + 84 = 104
        for framer in both(max_frame_bytes=104):
            self.assertEqual(framer.feed(b"\x00\x01\x00\x54"), [])
        for framer in both(max_frame_bytes=100):
            self.assertRaises(StunDecodeError, framer.feed, b"\x40\x00\x00\x61")

    def test_max_frame_bytes_minimum(self) -> None:
        """A limit below a STUN header is a configuration error."""
        self.assertRaises(ValueError, StreamFramer, 10)
        self.assertRaises(ValueError, strict, max_frame_bytes=10)

    def test_many_small_feeds_linear(self) -> None:
        """Feeding a 64 KiB ChannelData frame one byte at a time keeps the buffer to that one frame."""
        frame = channel_data(0x4000, bytes(65532))
        for framer in both():
            out: list[bytes] = []
            for i in range(len(frame)):
                out += framer.feed(frame[i:i + 1])
            self.assertEqual(out, [frame])
            self.assertEqual(framer.buffered, 0)

    # Carried over from the framer that lived in webrtcstack.turn (tolerant mode, the default).

    def test_mixed(self) -> None:
        """STUN and padded ChannelData back to back come out as separate frames without padding."""
        framer = StreamFramer()
        frames = framer.feed(STUN_WITH_SOFTWARE + padded(channel_data(0x4000, b"abcde")) + STUN_WITH_SOFTWARE)
        self.assertEqual(frames, [STUN_WITH_SOFTWARE, channel_data(0x4000, b"abcde"), STUN_WITH_SOFTWARE])
        self.assertEqual(framer.buffered, 0)

    def test_byte_at_a_time(self) -> None:
        """Feeding one byte at a time gives the same frames."""
        framer = StreamFramer()
        stream = (padded(channel_data(0x4001, b"xy")) + STUN_WITH_SOFTWARE
                  + padded(channel_data(0x4002, b"1234")))
        frames = []
        for i in range(len(stream)):
            frames += framer.feed(stream[i:i + 1])
        self.assertEqual(frames, [channel_data(0x4001, b"xy"), STUN_WITH_SOFTWARE, channel_data(0x4002, b"1234")])

    def test_unpadded_channel_data(self) -> None:
        """ChannelData sent without padding is still framed (a STUN message may follow)."""
        framer = StreamFramer()
        stream = (channel_data(0x4000, b"a") + STUN_WITH_SOFTWARE + channel_data(0x4000, b"abc")
                  + padded(channel_data(0x4001, b"z")))
        self.assertEqual(framer.feed(stream), [channel_data(0x4000, b"a"), STUN_WITH_SOFTWARE,
                                               channel_data(0x4000, b"abc"), channel_data(0x4001, b"z")])

    def test_too_large(self) -> None:
        """A frame larger than max_frame_bytes is a decode error."""
        framer = StreamFramer(max_frame_bytes=1000)
        self.assertRaises(StunDecodeError, framer.feed, struct.pack("!HH", 0x4000, 2000))

    def test_bad_first_byte(self) -> None:
        """A first byte of 0b10xxxxxx or 0b11xxxxxx is a decode error."""
        self.assertRaises(StunDecodeError, StreamFramer().feed, b"\x80\x00\x00\x00")


stun_frames = st.tuples(st.sampled_from(list(Method)), transaction_ids.filter(lambda t: len(t) == 12),
                        attribute_lists).map(lambda a: encode(Message(a[0], MessageClass.REQUEST, a[1], a[2])))
channel_frames = st.tuples(st.integers(0x4000, 0x7FFF), st.binary(max_size=40)).map(lambda a: channel_data(*a))
frames = st.lists(st.one_of(stun_frames, channel_frames), min_size=1, max_size=6)


def feed_in_pieces(framer: StreamFramer, stream: bytes, cuts: list[int]) -> list[bytes]:
    """Feed ``stream`` cut at ``cuts`` (taken modulo its length); return the frames."""
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    out: list[bytes] = []
    for start, end in zip(points, points[1:]):
        out += framer.feed(stream[start:end])
    return out


class StreamFramerPropertyTests(unittest.SynchronousTestCase):
    """Hypothesis properties."""

    @DETERMINISTIC
    @given(frames, st.lists(st.integers(0, 400), max_size=10))
    def test_chunking_does_not_matter(self, expected: list[bytes], cuts: list[int]) -> None:
        """Strict: however the stream is split, the same frames come out in the same order."""
        stream = b"".join(padded(f) for f in expected)
        framer = strict()
        self.assertEqual(feed_in_pieces(framer, stream, cuts), expected)
        self.assertEqual(framer.buffered, 0)

    @DETERMINISTIC
    @given(frames, st.lists(st.booleans(), min_size=6, max_size=6), st.lists(st.integers(0, 400), max_size=10))
    def test_tolerant_chunking_does_not_matter(self, expected: list[bytes], pad: list[bool],
                                               cuts: list[int]) -> None:
        """Tolerant: with ChannelData padded or not, however split, the same frames come out in order."""
        stream = b"".join(padded(f) if p else f for f, p in zip(expected, pad))
        framer = StreamFramer()
        self.assertEqual(feed_in_pieces(framer, stream, cuts), expected)
        self.assertLessEqual(framer.buffered, 3)

    @DETERMINISTIC
    @given(st.binary(max_size=200), st.booleans())
    def test_any_bytes_only_stun_decode_error(self, data: bytes, tolerant: bool) -> None:
        """Arbitrary bytes produce frames or StunDecodeError, nothing else, and frames never exceed the limit."""
        framer = StreamFramer(max_frame_bytes=64, accept_unpadded_channel_data=tolerant)
        try:
            for frame in framer.feed(data):
                self.assertLessEqual(len(frame), 64)
        except StunDecodeError:
            pass

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.booleans(), st.binary(max_size=40)), max_size=8), st.integers(1, 50))
    def test_any_split(self, items: list[tuple[bool, bytes]], chunk: int) -> None:
        """Any mix of frames split into any chunk size comes out whole and in order."""
        expected, stream = [], b""
        for is_stun, payload in items:
            if is_stun:
                msg = encode(Message(Method.BINDING, MessageClass.REQUEST, b"y" * 12, ((AttrType.DATA, payload),)))
                expected.append(msg)
                stream += msg
            else:
                expected.append(channel_data(0x4000, payload))
                stream += padded(channel_data(0x4000, payload))
        framer = StreamFramer()
        frames = []
        for i in range(0, len(stream), chunk):
            frames += framer.feed(stream[i:i + chunk])
        self.assertEqual(frames, expected)


def _state(framer: StreamFramer) -> tuple[object, ...]:
    return bytes(framer._buffer), framer._padding, framer.held, framer._failed is not None


def _fast_then_feed(framer: StreamFramer, chunk: bytes) -> list[bytes]:
    """What the stream protocol does: the lone-frame shortcut, else feed()."""
    frame = framer.lone_channel_data(chunk)
    return [frame] if frame is not None else framer.feed(chunk)


class LoneChannelDataTests(unittest.SynchronousTestCase):
    """``lone_channel_data``: a chunk that is one ChannelData frame, without the buffer, same result as feed()."""

    def test_the_usual_chunks(self) -> None:
        """A frame per chunk, padded, unpadded or of a length needing none: taken without feed()."""
        frame3, frame4 = channel_data(0x4000, b"abc"), channel_data(0x4001, b"abcd")
        for framer in both():
            self.assertEqual(framer.lone_channel_data(frame4), frame4)
            self.assertEqual(framer.lone_channel_data(padded(frame3)), frame3)
            self.assertEqual(framer.lone_channel_data(padded(frame3)), frame3)  # after the last one's padding
        tolerant = StreamFramer()
        self.assertEqual(tolerant.lone_channel_data(frame3), frame3)  # unpadded: padding may follow
        self.assertEqual(tolerant.lone_channel_data(frame4), frame4)  # ... and did not
        self.assertIsNone(strict().lone_channel_data(frame3))  # strict waits for the padding: feed() it

    def test_declines_and_changes_nothing(self) -> None:
        """STUN, two frames, a part frame, non-zero padding (tolerant), a frame over the limit, a held framer:
        None, and the framer is as it was."""
        frame = channel_data(0x4000, b"abc")
        part_fed = both(64)
        for framer in part_fed:
            framer.feed(frame[:2])
        for framer in both(64) + part_fed:
            chunks = [STUN, padded(frame) * 2, frame[:5], channel_data(0x4000, bytes(61)), b""]
            if framer.accept_unpadded_channel_data:
                chunks.append(frame + b"\x01")  # not zeros: the next frame's start (strict skips it unread)
            for chunk in chunks:
                before = _state(framer)
                self.assertIsNone(framer.lone_channel_data(chunk))
                self.assertEqual(_state(framer), before)
        held = StreamFramer(hold_after_connection_bind=True)
        held.feed(encode(Message(Method.CONNECTION_BIND, MessageClass.REQUEST, b"z" * 12)))
        self.assertIsNone(held.lone_channel_data(padded(frame)))

    @settings(derandomize=True, max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["stun", "cd", "cd-unpadded", "garbage"]), st.binary(max_size=12)),
                    max_size=8),
           st.lists(st.integers(0, 200), max_size=8), st.booleans(), st.booleans())
    def test_same_as_feed(self, items: list[tuple[str, bytes]], cuts: list[int], tolerant: bool,
                          at_frames: bool) -> None:
        """However a stream of frames (and garbage) is cut, at frame ends or not, trying the shortcut first
        gives feed()'s frames, feed()'s errors and feed()'s state after every chunk."""
        stream = b""
        ends = []
        for kind, payload in items:
            if kind == "stun":
                stream += encode(Message(Method.BINDING, MessageClass.REQUEST, b"y" * 12, ((AttrType.DATA, payload),)))
            elif kind == "garbage":
                stream += b"\x80" + payload
            else:
                frame = channel_data(0x4000 + len(payload), payload)
                stream += frame if kind == "cd-unpadded" else padded(frame)
            ends.append(len(stream))
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)} | (set(ends) if at_frames else set()))
        plain = StreamFramer(40, accept_unpadded_channel_data=tolerant)
        fast = StreamFramer(40, accept_unpadded_channel_data=tolerant)
        for start, end in zip(points, points[1:]):
            chunk = stream[start:end]
            try:
                expected: object = plain.feed(chunk)
            except StunDecodeError as e:
                expected = str(e)
            try:
                got: object = _fast_then_feed(fast, chunk)
            except StunDecodeError as e:
                got = str(e)
            self.assertEqual(got, expected)
            self.assertEqual(_state(fast), _state(plain))
