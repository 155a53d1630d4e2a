# -*- test-case-name: tests.stun.test_framing -*-
"""Splitting a byte stream (TCP, TLS) into STUN messages and ChannelData frames.

On a stream each frame announces its own length (RFC 8489 §6.2.2 for STUN,
RFC 8656 §12.5 for ChannelData):

* first two bits ``00``: a STUN message, 20-byte header + the length field
  (a multiple of 4);
* first two bits ``01``: ChannelData, 4-byte header + the length field, then
  padding to a multiple of 4 (mandatory on streams, RFC 8656 §12.5);
* ``10`` / ``11``: not ours; the stream cannot be resynchronised.

ChannelData frames are handed out without their stream padding, so they look
exactly like a ChannelData datagram and the engine treats both the same way.

The buffer is a :class:`bytearray` consumed from the front once per
:meth:`StreamFramer.feed`, so the work is linear in the bytes fed, however the
stream is chunked.
"""

from __future__ import annotations

from webrtcstack.stun.constants import CHANNEL_DATA_HEADER_LENGTH, HEADER_LENGTH
from webrtcstack.stun.errors import StunDecodeError

__all__ = ["StreamFramer", "DEFAULT_MAX_FRAME_SIZE"]

#: A STUN message can be at most 20 + 65535 bytes; ChannelData at most 4 + 65535.
#: Servers should use much less (RFC 8489 §6.2.2 suggests the path MTU for UDP).
DEFAULT_MAX_FRAME_SIZE = 4 + 65535 + 3


class StreamFramer:
    """Sans-IO framer: :meth:`feed` bytes, get whole frames back.

    :param max_frame_size: frames announcing more bytes than this (padding
        included) are refused, so a peer cannot make us buffer 64 KiB per
        connection unless we allow it.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < HEADER_LENGTH:
            raise ValueError("max_frame_size must allow a STUN header")
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._failed: StunDecodeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the stream; return every frame now complete, in order.

        :raises StunDecodeError: on a frame that is neither STUN nor
            ChannelData, a bad STUN length, or an oversize frame.  The framer
            stays failed: later calls raise the same error.
        """
        if self._failed is not None:
            raise self._failed
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        pos = 0
        available = len(buf)
        try:
            while available - pos >= 1:
                first = buf[pos]
                if first >= 0x80:
                    raise StunDecodeError("stream frame is neither STUN nor ChannelData")
                if available - pos < CHANNEL_DATA_HEADER_LENGTH:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                if first < 0x40:
                    if length % 4:
                        raise StunDecodeError("STUN message length is not a multiple of 4")
                    size = wire_size = HEADER_LENGTH + length
                else:
                    size = CHANNEL_DATA_HEADER_LENGTH + length
                    wire_size = (size + 3) & ~3
                if wire_size > self.max_frame_size:
                    raise StunDecodeError(f"frame of {wire_size} bytes exceeds {self.max_frame_size}")
                if available - pos < wire_size:
                    break
                frames.append(bytes(buf[pos:pos + size]))
                pos += wire_size
        except StunDecodeError as e:
            self._failed = e
            self._buffer = bytearray()
            raise
        finally:
            if pos:
                del buf[:pos]
        return frames
