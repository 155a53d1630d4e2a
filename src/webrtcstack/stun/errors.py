# -*- test-case-name: tests.stun.test_message -*-
"""The two errors of the STUN core.

* :class:`StunDecodeError`: bytes we cannot parse.  A datagram is dropped and
  counted; a stream is closed, since it can no longer be resynchronised.
* :class:`ProtocolViolation`: a well-formed request we must refuse.  Handlers
  raise it and one place turns it into an error response carrying
  ``error_code`` (RFC 8489 §6.3.4) and any ``extra`` attributes (UNKNOWN-ATTRIBUTES
  for 420, ALTERNATE-SERVER for 300).  The TURN engine raises this one; there is
  no other.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StunDecodeError", "ProtocolViolation"]


class StunDecodeError(ValueError):
    """Bytes that are not a valid STUN message, ChannelData frame or attribute."""


class ProtocolViolation(Exception):
    """A request the server refuses, with the error code to answer it with.

    :param error_code: an ERROR-CODE value such as 400, 420 or 437.
    :param extra: attributes the error response carries besides ERROR-CODE, as ``(type, value)``.
    """

    def __init__(self, error_code: int, extra: tuple[tuple[int, Any], ...] = ()) -> None:
        super().__init__(error_code)
        self.error_code = error_code
        self.extra = extra
