# -*- test-case-name: tests.stun.test_message -*-
"""The two errors of the STUN core.

* :class:`StunDecodeError`: bytes we cannot parse.  A datagram is dropped and
  counted; a stream is closed, since it can no longer be resynchronised.
* :class:`ProtocolViolation`: a well-formed request we must refuse.  Handlers
  raise it and one place turns it into an error response carrying
  ``error_code`` (RFC 8489 §6.3.4).
"""

from __future__ import annotations

__all__ = ["StunDecodeError", "ProtocolViolation"]


class StunDecodeError(ValueError):
    """Bytes that are not a valid STUN message, ChannelData frame or attribute."""


class ProtocolViolation(Exception):
    """A request the server refuses, with the error code to answer it with.

    :param error_code: an ERROR-CODE value such as 400, 420 or 437.
    :param reason: the reason phrase (may be empty).
    :param unknown_attributes: for 420, the types to list in UNKNOWN-ATTRIBUTES.
    """

    def __init__(self, error_code: int, reason: str = "", unknown_attributes: tuple[int, ...] = ()) -> None:
        super().__init__(error_code, reason)
        self.error_code = error_code
        self.reason = reason
        self.unknown_attributes = unknown_attributes
