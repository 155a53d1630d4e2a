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

Some old clients send ChannelData on TCP without the padding.  With
``accept_unpadded_channel_data`` (the default) the framer hands a ChannelData
frame out as soon as its announced bytes are in, then decides whether the
next 1-3 bytes are the padding or already the next frame: non-zero bytes
are a frame; zeros followed by a ChannelData first byte are padding; zeros
followed by the magic cookie where an unpadded STUN header would carry it
are a STUN message; otherwise they are padding.  The strict mode waits for
the padding and skips it unread, as the RFC has it.

The buffer is a :class:`bytearray` consumed from the front once per
:meth:`StreamFramer.feed`, so the work is linear in the bytes fed, however the
stream is chunked; the only allocation per frame is the frame's own
:class:`bytes`.
"""

from __future__ import annotations

from webrtcstack.stun.constants import CHANNEL_DATA_HEADER_LENGTH, HEADER_LENGTH, MAGIC_COOKIE_BYTES
from webrtcstack.stun.errors import StunDecodeError

__all__ = ["StreamFramer", "DEFAULT_MAX_FRAME_BYTES"]

#: The largest ChannelData frame, 4 + 65535 bytes, with its stream padding.
#: A STUN message may announce up to 20 + 65532; servers should allow much
#: less (RFC 8489 §6.2.2 suggests the path MTU for UDP).
DEFAULT_MAX_FRAME_BYTES = 65540

_NOT_OURS = "stream frame is neither STUN nor ChannelData"


class StreamFramer:
    """Sans-IO framer: :meth:`feed` bytes, get whole frames back.

    :param max_frame_bytes: frames (header included, stream padding not) of
        more bytes than this are refused as soon as their header is in, so a
        peer cannot make us buffer 64 KiB per connection unless we allow it.
    :param accept_unpadded_channel_data: also accept ChannelData sent without
        its stream padding (see the module docstring); ``False`` is the strict
        RFC 8656 §12.5 framing.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, *,
                 accept_unpadded_channel_data: bool = True, hold_after_connection_bind: bool = False) -> None:
        if max_frame_bytes < HEADER_LENGTH:
            raise ValueError("max_frame_bytes must allow a STUN header")
        self.max_frame_bytes = max_frame_bytes
        self.accept_unpadded_channel_data = accept_unpadded_channel_data
        self._buffer = bytearray()
        #: Tolerant mode: how many bytes of padding may follow the last ChannelData frame.
        self._padding = 0
        self._failed: StunDecodeError | None = None
        #: RFC 6062: stop after a ConnectionBind request (what follows may be a raw byte stream)
        self.hold_after_connection_bind = hold_after_connection_bind
        #: Whether framing stopped after a ConnectionBind request (see :meth:`resume`, :meth:`detach`);
        #: a plain attribute, read once per received chunk by the stream shell.
        self.held = False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame (or for a padding verdict)."""
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
        if self.held:
            return []
        frames: list[bytes] = []
        pos = 0
        available = len(buf)
        limit = self.max_frame_bytes
        tolerant = self.accept_unpadded_channel_data
        padding = self._padding
        while pos < available:
            if padding:
                # The usual case, zero padding and then the next ChannelData frame, needs no call.
                end = pos + padding
                if end < available and 0x40 <= buf[end] < 0x80 and buf.count(0, pos, end) == padding:
                    pos = end
                    padding = 0
                    continue
                verdict = _padding_verdict(buf, pos, available, padding)
                if verdict is None:
                    break
                if verdict:
                    pos += padding
                padding = 0
                continue
            first = buf[pos]
            if available - pos < CHANNEL_DATA_HEADER_LENGTH:
                if first >= 0x80:
                    raise self._fail(_NOT_OURS)
                break
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if first < 0x40:
                if length & 3:
                    raise self._fail("STUN message length is not a multiple of 4")
                size = wire_size = HEADER_LENGTH + length
                pad = 0
            elif first < 0x80:
                size = CHANNEL_DATA_HEADER_LENGTH + length
                pad = -length & 3
                wire_size = size if tolerant else size + pad
            else:
                raise self._fail(_NOT_OURS)
            if size > limit:
                raise self._fail(f"frame of {size} bytes exceeds {limit}")
            if available - pos < wire_size:
                break
            frames.append(bytes(buf[pos:pos + size]))
            pos += wire_size
            if tolerant:
                padding = pad
            if first == 0 and buf[pos - wire_size + 1] == 0x0B and self.hold_after_connection_bind:
                # A ConnectionBind request: the rest waits for resume() or detach().
                self.held = True
                break
        self._padding = padding
        if pos:
            del buf[:pos]
        return frames

    def lone_channel_data(self, data: bytes) -> bytes | None:
        """The one frame of a chunk that is one whole ChannelData frame; None: :meth:`feed` it instead.

        A TURN client's media arrives as one ChannelData frame per received
        chunk. This answers that case without the buffer: when the framer is
        between frames (or holds only the zero padding of the last
        ChannelData frame, which a ChannelData first byte settles as padding)
        and ``data`` is one ChannelData frame, with nothing after it but its
        padding, the frame is returned and the framer is left exactly as
        :meth:`feed` would leave it (tolerant mode: waiting to see whether
        zeros are padding). Anything else returns None and changes nothing.
        """
        if self._failed is not None or self.held or not data or not 0x40 <= data[0] < 0x80:
            return None
        buf = self._buffer
        if buf and len(buf) != self._padding:  # (held bytes as many as the padding are always its zeros)
            return None
        n = len(data)
        if n < CHANNEL_DATA_HEADER_LENGTH:
            return None
        size = CHANNEL_DATA_HEADER_LENGTH + ((data[2] << 8) | data[3])
        if size > self.max_frame_bytes:
            return None
        pad = -size & 3
        if not self.accept_unpadded_channel_data:
            # (a strict framer holds no padding, so its buffer is empty here)
            if n != size + pad:
                return None
            return data[:size] if pad else data
        if n == size:
            frame = data
        elif n == size + pad and data.count(0, size) == pad:
            frame = data[:size]
        else:
            return None
        if buf:
            buf.clear()
        if n > size:
            buf += data[size:]
        self._padding = pad
        return frame

    def resume(self) -> bytes:
        """After a ConnectionBind that failed: framing goes on; the bytes that followed it, to feed again."""
        self.held = False
        rest = bytes(self._buffer)
        self._buffer = bytearray()
        return rest

    def detach(self) -> bytes:
        """After a ConnectionBind that succeeded: the bytes that followed it, raw; the framer is done."""
        rest = bytes(self._buffer)
        self._buffer = bytearray()
        self._failed = StunDecodeError("the stream is a relayed TCP connection now")
        return rest

    def _fail(self, why: str) -> StunDecodeError:
        """Record the error the framer now stays in, drop the buffer, and return the error to raise."""
        self._failed = error = StunDecodeError(why)
        self._buffer = bytearray()
        self._padding = 0
        return error


def _padding_verdict(buf: bytearray, pos: int, available: int, padding: int) -> bool | None:
    """Are the ``padding`` bytes at ``pos`` padding (True), a frame (False), or not known yet (None)?

    A zero byte may start either padding or an unpadded STUN message (type
    0x0001, Binding request, starts with one), so what follows decides:
    ChannelData right after the zeros means padding; the magic cookie at
    ``pos + 4`` means a STUN message starts at ``pos``.  Reads in place: no
    slice is made.
    """
    have = available - pos
    for i in range(pos, pos + min(padding, have)):
        if buf[i]:
            return False
    if have < padding:
        return None
    if have > padding and 0x40 <= buf[pos + padding] < 0x80:
        return True
    if have >= 8:
        return not buf.startswith(MAGIC_COOKIE_BYTES, pos + 4)
    return None
