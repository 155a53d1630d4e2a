"""Collider's wire format: client commands in, ``{"msg":…,"error":…}`` envelopes out.

Error texts are collider's exactly where collider has one; ours (for the
limits collider lacks) say what the limit is.

This module is part of the sans-IO core.
"""

from __future__ import annotations

import json
from typing import Any

import attr

__all__ = [
    "Errors",
    "Command",
    "FrameError",
    "parse_command",
    "envelope",
]


class Errors:
    """Error texts sent in the ``error`` field (and in HTTP 500 bodies)."""

    DUPLICATED_REGISTER_REQUEST = "Duplicated register request"
    INVALID_REGISTER = "Invalid register request: missing 'clientid' or 'roomid'"
    ROOM_FULL = "Max room capacity reached"
    DUPLICATED_REGISTRATION = "Duplicated registration"
    NOT_REGISTERED = "Client not registered"
    INVALID_SEND = "Invalid send request: missing 'msg'"
    UNEXPECTED_CMD = "Invalid message: unexpected 'cmd'"
    JSON_PREFIX = "websocket.JSON.Receive error: "
    QUEUE_FULL = "Too many messages queued for the client"
    SERVER_FULL = "The server holds too many messages; try again shortly"
    # ours, beyond collider
    NOT_ISSUED = "Invalid register request: the room server did not issue this 'clientid' for this 'roomid'"
    BAD_ID = "Invalid register request: 'roomid' and 'clientid' may use only letters, digits, '-' and '_' (1 to 64)"
    NOT_IN_ROOM = "Client not in room"
    UNKNOWN_RECIPIENT = "Invalid send request: 'to' names no member of the room"
    TOO_MANY_ROOMS = "Too many rooms"

    @staticmethod
    def too_large(limit: int) -> str:
        """A message over the size limit."""
        return f"Message too large: at most {limit} bytes"

    @staticmethod
    def too_fast(limit: int) -> str:
        """A client over its rate limit."""
        return f"Too many messages: at most {limit} a second; message dropped"


class FrameError(Exception):
    """A frame that is not a JSON object of strings; the text is the error to send."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Command:
    """One client frame; absent fields are empty strings."""

    cmd: str = ""
    roomid: str = ""
    clientid: str = ""
    msg: str = ""
    #: group calls (our extension): the one member to deliver to; empty: every other member
    to: str = ""


def parse_command(text: str) -> Command:
    """Decode a client frame; raise :class:`FrameError` if it is not a JSON object of strings.

    Unknown keys are ignored, as collider ignores them.
    """
    try:
        value = json.loads(text)
    except ValueError as e:
        raise FrameError(Errors.JSON_PREFIX + str(e)) from None
    if not isinstance(value, dict):
        raise FrameError(Errors.JSON_PREFIX + f"cannot decode a JSON {type(value).__name__} into a command object")
    fields: dict[str, str] = {}
    for key in ("cmd", "roomid", "clientid", "msg", "to"):
        item: Any = value.get(key)
        if item is None:
            continue
        if not isinstance(item, str):
            raise FrameError(Errors.JSON_PREFIX + f"field {key!r} must be a string")
        fields[key] = item
    return Command(**fields)


_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def envelope(msg: str = "", error: str = "", sender: str | None = None) -> str:
    """One server frame: ``{"msg":"…","error":"…"}`` and a newline, escaped as Go escapes.

    Both keys are always there (Android reads ``msg`` unconditionally).

    :param sender: group calls only: the member who sent ``msg``, stamped by the
        server as ``"from"`` (a frame without it comes from the server itself).
    """
    fields = {"msg": msg, "error": error}
    if sender is not None:
        fields["from"] = sender
    body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    # <, >, & and the two JS line separators only occur inside the strings.
    return body.translate(_GO_ESCAPES) + "\n"
