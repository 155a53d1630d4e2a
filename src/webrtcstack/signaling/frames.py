# -*- test-case-name: tests.signaling.test_frames -*-
"""The common case of RFC 6455 framing, read and written without Autobahn's general code.

Nearly every frame a signaling client sends is one whole, final, masked text
frame, and a read from the socket usually holds one or a few of them.
:func:`read_text_frames` takes those off the front of the bytes; it stops at
the first thing that is anything else (a control frame, a fragment, a binary
frame, RSV bits, an unmasked frame, a frame longer than allowed, an
incomplete frame, a payload that is not UTF-8), and the caller hands the rest
to Autobahn's general parser, which has the last word on every error.

:func:`text_frame` is the other direction: the one kind of frame the server
sends per message, an unmasked, unfragmented text frame.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import struct

__all__ = ["read_text_frames", "text_frame"]

#: Server text-frame headers (FIN, opcode 1, no mask) with a 16- and a 64-bit payload length.
_TEXT16 = struct.Struct("!BBH")
_TEXT64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """One whole text frame from the server (RFC 6455 §5.2): a 2-, 4- or 10-byte header and ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 0x10000:
        return _TEXT16.pack(0x81, 126, n) + payload
    return _TEXT64.pack(0x81, 127, n) + payload


def read_text_frames(data: bytes, max_payload: int) -> list[tuple[bytes, int]]:
    """The unmasked payloads of the whole masked text frames at the start of ``data``.

    :param max_payload: the largest payload taken here (0: no limit); a longer
        frame is left for the general parser (which enforces its own cap).
    :returns: each payload with the offset just past its frame, in order (so a
        caller that stops early knows where the rest begins).
    """
    frames: list[tuple[bytes, int]] = []
    pos = 0
    size = len(data)
    while size - pos >= 6:
        # FIN=1, RSV=0, opcode 1 (text); MASK=1 (RFC 6455 §5.1: a client masks every frame).
        if data[pos] != 0x81 or not data[pos + 1] & 0x80:
            break
        n = data[pos + 1] & 0x7F
        head = pos + 2
        if n == 126:
            if size - pos < 8:
                break
            n = (data[head] << 8) | data[head + 1]
            head += 2
        elif n == 127:
            if size - pos < 14:
                break
            n = int.from_bytes(data[head:head + 8], "big")
            head += 8
        if max_payload and n > max_payload:
            break
        start = head + 4
        end = start + n
        if end > size:
            break
        mask = data[head:start]
        if n:
            key = (mask * ((n >> 2) + 1))[:n]
            payload = (int.from_bytes(data[start:end], "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                break
        else:
            payload = b""
        frames.append((payload, end))
        pos = end
    return frames
