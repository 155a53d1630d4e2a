"""The Redis wire protocol (RESP2) and ``redis://`` URLs, sans-IO.

:func:`encode` turns a command into bytes; :class:`RespParser` turns the
bytes Redis sends into replies (``bytes``, ``int``, ``None``, lists, or a
:class:`RedisError` for an error reply), however the stream is split.
:func:`parse_url` reads the ``[redis] url`` forms.

This module is part of the sans-IO core.
"""

from __future__ import annotations

from typing import Any, Union
from urllib.parse import unquote, urlsplit

import attr

__all__ = ["RedisError", "ProtocolError", "Reply", "encode", "RespParser", "RedisURL", "parse_url"]

#: the largest bulk string or array we accept from Redis (a guard against a corrupt stream)
MAX_BULK = 512 * 1024 * 1024
MAX_ARRAY = 1 << 24


class RedisError(Exception):
    """An error reply from Redis (``-ERR ...``); ``str(e)`` is its text."""

    @property
    def kind(self) -> str:
        """The first word (``ERR``, ``NOSCRIPT``, ``WRONGTYPE``, ``NOAUTH``, …)."""
        return str(self).split(" ", 1)[0]


class ProtocolError(Exception):
    """Bytes that are not RESP: the connection must be dropped."""


Reply = Union[bytes, int, None, list[Any], RedisError]


def _arg(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        raise TypeError("a Redis argument may not be a bool")
    if isinstance(value, (int, float)):
        return repr(value).encode()
    raise TypeError(f"a Redis argument must be bytes, str or a number, not {type(value).__name__}")


def encode(*args: object) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        data = _arg(a)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class RespParser:
    """Incremental RESP2 reader: :meth:`feed` bytes, get the replies completed by them."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def feed(self, data: bytes) -> list[Reply]:
        """Add bytes; return every reply now complete, in order.

        :raises ProtocolError: on bytes that are not RESP.
        """
        self._buf = self._buf[self._pos:] + data if self._pos else self._buf + data
        self._pos = 0
        replies: list[Reply] = []
        while True:
            start = self._pos
            try:
                reply = self._read()
            except _Incomplete:
                self._pos = start
                break
            replies.append(reply)
        self._buf = self._buf[self._pos:]
        self._pos = 0
        return replies

    def _line(self) -> bytes:
        end = self._buf.find(b"\r\n", self._pos)
        if end < 0:
            if len(self._buf) - self._pos > 65536:
                raise ProtocolError("a RESP header line longer than 64 KiB")
            raise _Incomplete
        line = self._buf[self._pos:end]
        self._pos = end + 2
        return line

    def _int(self, text: bytes) -> int:
        try:
            return int(text)
        except ValueError:
            raise ProtocolError(f"not a RESP integer: {text[:40]!r}") from None

    def _read(self) -> Reply:
        line = self._line()
        if not line:
            raise ProtocolError("an empty RESP line")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return self._int(rest)
        if kind == b"$":
            n = self._int(rest)
            if n == -1:
                return None
            if not 0 <= n <= MAX_BULK:
                raise ProtocolError(f"a bulk string of {n} bytes")
            if len(self._buf) - self._pos < n + 2:
                raise _Incomplete
            data = self._buf[self._pos:self._pos + n]
            if self._buf[self._pos + n:self._pos + n + 2] != b"\r\n":
                raise ProtocolError("a bulk string not followed by CRLF")
            self._pos += n + 2
            return data
        if kind == b"*":
            n = self._int(rest)
            if n == -1:
                return None
            if not 0 <= n <= MAX_ARRAY:
                raise ProtocolError(f"an array of {n} items")
            return [self._read() for _ in range(n)]
        raise ProtocolError(f"an unknown RESP type byte {kind!r}")


class _Incomplete(Exception):
    pass


@attr.s(frozen=True, slots=True, auto_attribs=True)
class RedisURL:
    """Where Redis is and how to log in (from ``[redis] url``)."""

    #: ``redis`` (TCP), ``rediss`` (TLS) or ``unix``
    scheme: str
    host: str = ""
    port: int = 6379
    #: the socket path for ``unix``
    path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None

    def display(self) -> str:
        """The URL without its password (for logs and /status)."""
        who = f"{self.username}@" if self.username else ""
        if self.scheme == "unix":
            return f"unix://{who}{self.path}?db={self.db}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{who}{host}:{self.port}/{self.db}"


def parse_url(text: str) -> RedisURL:
    """Read ``redis://[user:password@]host[:port][/db]``, ``rediss://…`` or ``unix://[user:password@]/path[?db=N]``.

    :raises ValueError: with a sentence saying what is wrong.
    """
    value = text.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{value!r} is not a Redis URL ({e})") from None
    scheme = parts.scheme.lower()
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme == "unix":
        path = parts.path
        if not path.startswith("/"):
            raise ValueError(f"{value!r}: a unix:// URL needs an absolute socket path, e.g. unix:///run/redis/redis.sock")
        db = 0
        for pair in filter(None, parts.query.split("&")):
            key, _, val = pair.partition("=")
            if key != "db" or not val.isdigit():
                raise ValueError(f"{value!r}: the only query a unix:// URL takes is ?db=N")
            db = int(val)
        return RedisURL("unix", path=path, db=db, username=user, password=password)
    if scheme not in ("redis", "rediss"):
        raise ValueError(f"{value!r} is not a URL such as redis://127.0.0.1:6379/0, rediss://… or unix:///path")
    if not parts.hostname:
        raise ValueError(f"{value!r} names no host")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: a redis:// URL takes no query")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"{value!r}: the path must be a database number such as /0")
    return RedisURL(scheme, host=parts.hostname, port=port or 6379, db=int(path or 0),
                    username=user, password=password)
