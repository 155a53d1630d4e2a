"""The client text-frame reader (signaling.frames): the common case taken, everything else left alone."""

from __future__ import annotations

import struct

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.stun.strategies import DETERMINISTIC
from webrtcstack.signaling.frames import read_text_frames, text_frame


def frame(payload: bytes, mask: bytes = b"\x11\x22\x33\x44", first: int = 0x81, masked: bool = True) -> bytes:
    """A client frame as RFC 6455 §5.2 lays it out (written here from the RFC, not from the reader)."""
    n = len(payload)
    if n < 126:
        head = bytes((first, (0x80 if masked else 0) | n))
    elif n < 0x10000:
        head = bytes((first, (0x80 if masked else 0) | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, (0x80 if masked else 0) | 127)) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class ReadTextFramesTests(SynchronousTestCase):
    def test_rfc_example(self) -> None:
        """RFC 6455 §5.7's masked "Hello" reads as Hello, using all 11 bytes."""
        data = bytes.fromhex("818537fa213d7f9f4d5158")
        self.assertEqual(read_text_frames(data, 0), [(b"Hello", 11)])

    def test_all_three_lengths_and_offsets(self) -> None:
        """7-, 16- and 64-bit lengths in one read; each payload comes with the end of its frame."""
        payloads = [b"a" * 10, "é".encode() * 200, b"z" * 70000, b""]
        data = b"".join(frame(p) for p in payloads)
        got = read_text_frames(data, 0)
        self.assertEqual([p for p, _ in got], payloads)
        self.assertEqual(got[-1][1], len(data))

    def test_stops_at_anything_else(self) -> None:
        """Valid frames before a ping, a fragment, binary, RSV, unmasked, too long, half a frame or bad UTF-8 are
        taken; that frame and what follows are left for the general parser."""
        good = frame(b'{"cmd":"send"}')
        for other in (
            frame(b"ping", first=0x89),                  # control frame
            frame(b"part", first=0x01),                  # FIN=0: a fragment
            frame(b"\x00\x01", first=0x82),              # binary
            frame(b"rsv", first=0xC1),                   # RSV1 without an extension
            frame(b"plain", masked=False),               # unmasked (a protocol error)
            frame(b"x" * 300),                           # over max_payload below
            frame(b"half")[:-2],                         # incomplete
            frame(b"\xff\xfe"),                          # not UTF-8
            frame(b"a" * 200)[:3],                       # a 16-bit length not all there
        ):
            data = good + other + good
            self.assertEqual(read_text_frames(data, 256), [(b'{"cmd":"send"}', len(good))], other)

    @DETERMINISTIC
    @given(st.lists(st.text(max_size=300), max_size=6), st.binary(min_size=4, max_size=4))
    def test_any_texts(self, texts: list[str], mask: bytes) -> None:
        """Any sequence of whole text frames reads back as the texts, to the last byte."""
        data = b"".join(frame(t.encode(), mask) for t in texts)
        got = read_text_frames(data, 0)
        self.assertEqual([p.decode() for p, _ in got], texts)
        self.assertEqual(got[-1][1] if got else 0, len(data))


class TextFrameTests(SynchronousTestCase):
    def test_rfc_example(self) -> None:
        """RFC 6455 §5.7's unmasked single-frame "Hello" is 0x81 0x05 "Hello"."""
        self.assertEqual(text_frame(b"Hello"), bytes.fromhex("810548656c6c6f"))

    def test_length_forms(self) -> None:
        """125 bytes fit the 7-bit length; 126 and 65,535 take 16 bits; 65,536 takes 64 (RFC 6455 §5.2)."""
        self.assertEqual(text_frame(b"a" * 125)[:2], b"\x81\x7d")
        self.assertEqual(text_frame(b"a" * 126)[:4], b"\x81\x7e\x00\x7e")
        self.assertEqual(text_frame(b"a" * 65535)[:4], b"\x81\x7e\xff\xff")
        self.assertEqual(text_frame(b"a" * 65536)[:10], b"\x81\x7f" + (65536).to_bytes(8, "big"))
        self.assertEqual(len(text_frame(b"a" * 65536)), 65546)
