# -*- test-case-name: tests.turn.test_framing -*-
"""Splitting a byte stream (TCP, TLS) into STUN messages and ChannelData frames.

RFC 8656 §12.5: on a stream, STUN messages and ChannelData are sent back to
back; a ChannelData message is padded to a multiple of four bytes.  The first
two bits tell them apart (00: STUN, 01: ChannelData).

The buffer is a ``bytearray`` consumed from the front in one ``del`` per
``feed`` call, so a stream of many small frames costs linear time, and a frame
larger than ``max_frame_bytes`` (or any first byte that is neither) is a
:class:`FramingError`: the stream cannot be resynchronised and must be closed.

Unpadded ChannelData (some old clients omit the padding on TCP) is accepted:
when the bytes after a ChannelData frame could only be padding, i.e. they are
zero and the next frame would otherwise not start with a valid first byte
after them, they are skipped.
"""

from __future__ import annotations

__all__ = ["StreamFramer", "FramingError"]


class FramingError(ValueError):
    """The stream does not hold STUN or ChannelData frames."""


class StreamFramer:
    """Incremental splitter; :meth:`feed` returns the complete frames so far.

    :param max_frame_bytes: the largest frame (header included) accepted.
    """

    def __init__(self, max_frame_bytes: int = 65540) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._skip_padding = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every complete frame (ChannelData without its padding).

        :raises FramingError: a frame is too large or starts with 0b10/0b11.
        """
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while True:
            if self._skip_padding:
                verdict = self._padding_verdict(buf, pos, end, self._skip_padding)
                if verdict is None:
                    break
                if verdict:
                    pos += self._skip_padding
                self._skip_padding = 0
            if end - pos < 4:
                break
            first = buf[pos]
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if first < 0x40:
                size = 20 + length
                if size > self.max_frame_bytes:
                    raise FramingError("STUN message larger than allowed")
                if end - pos < size:
                    break
                frames.append(bytes(buf[pos:pos + size]))
                pos += size
            elif first < 0x80:
                size = 4 + length
                if size > self.max_frame_bytes:
                    raise FramingError("ChannelData larger than allowed")
                if end - pos < size:
                    break
                frames.append(bytes(buf[pos:pos + size]))
                pos += size
                self._skip_padding = -length & 3
            else:
                raise FramingError("neither STUN nor ChannelData")
        if pos:
            del buf[:pos]
        return frames

    @staticmethod
    def _padding_verdict(buf: bytearray, pos: int, end: int, skip: int) -> bool | None:
        """Are the next ``skip`` bytes padding (True), a frame (False), or unknown yet (None)?

        A zero byte may start either padding or an unpadded STUN message, so
        we look at what follows: ChannelData right after the zeros means
        padding; the magic cookie at ``pos + 4`` means STUN.
        """
        available = end - pos
        if available == 0:
            return None
        for i in range(min(skip, available)):
            if buf[pos + i] != 0:
                return False
        if available < skip:
            return None
        if available > skip and 0x40 <= buf[pos + skip] < 0x80:
            return True
        if available >= 8:
            return buf[pos + 4:pos + 8] != b"\x21\x12\xa4\x42"
        return None

    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)
