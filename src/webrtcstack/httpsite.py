"""The public HTTP site: twisted.web with a byte budget for bodies and a deadline for requests (shell code).

twisted.web on its own reads a request body whatever its size (into memory,
or a temporary file past 100 KB) before any resource can look at it, and
keeps a connection that sends one header byte every few seconds for as long
as its idle timer is reset.  :class:`LimitedSite` closes both holes:

- a request whose ``Content-Length`` is over ``max_body_bytes`` is answered
  ``413 Payload Too Large`` from its headers, before a body byte is read;
  a chunked body is counted as it arrives and refused the same way once over;
- a write request (``POST``, ``PUT``, ``DELETE``: joins, messages, leaves,
  collider posts) beyond ``writes_per_second`` from one address gets
  ``429 Too Many Requests``, also before its body is read;
- a request must arrive whole (request line, headers and body) within
  ``request_timeout_s`` of its first byte, else ``408 Request Timeout`` and
  the connection closes; between requests a keep-alive connection may stay
  idle for the same time.

A WebSocket upgrade is a complete request (no body): once Autobahn has
taken the connection over, neither limit applies to it.

Behind ``[http] trusted_proxies`` each request's client is the one the
proxy's headers name (:func:`webrtcstack.clients.client_behind_proxies`):
``request.getClientAddress()``, the write rate per address, the access log
and ``request.isSecure()`` (from ``X-Forwarded-Proto``/``proto=``) all use it.
``[http] access_log`` picks the access log: ``on`` (combined log format),
``anonymised``, or ``off``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

from webrtcstack.clients import ForwardedClient, Network, anonymise_path, client_behind_proxies, truncate_address
from webrtcstack.limits import ReplyRateLimiter

__all__ = ["LimitedSite", "LimitedChannel"]

log = Logger()

_CLOSE_HEADERS = b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"


class LimitedChannel(HTTPChannel):
    """An HTTP/1.1 channel with a body byte budget and a whole-request deadline."""

    site: LimitedSite
    _deadline: Any = None
    _body_bytes = 0
    _refused = False

    def _respond_and_close(self, status: bytes, text: bytes) -> None:
        """Answer ``status`` with a short text and close (no request object is involved)."""
        if self._refused:
            return
        self._refused = True
        self._cancel_deadline()
        transport: Any = self.transport
        if transport is None:
            return
        transport.write(b"HTTP/1.1 " + status + b"\r\n" + _CLOSE_HEADERS
                        + b"Content-Length: " + str(len(text)).encode() + b"\r\n\r\n" + text)
        transport.loseConnection()
        # Stop parsing whatever else this client sends.
        self.setRawMode()
        self.rawDataReceived = lambda data: None  # type: ignore[method-assign]

    def _cancel_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _too_slow(self) -> None:
        self._deadline = None
        self.site.counters["request_timeouts"] += 1
        self._respond_and_close(b"408 Request Timeout", b"request not complete in time\n")

    def connectionMade(self) -> None:
        super().connectionMade()
        # An idle connection (no request begun) gets the same time.
        self._deadline = self.site.clock.callLater(self.site.request_timeout_s, self._too_slow)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._deadline is None:
            self._deadline = self.site.clock.callLater(self.site.request_timeout_s, self._too_slow)
        super().dataReceived(data)

    def _client(self) -> str:
        """The client of the request whose headers just arrived (behind a trusted proxy: the one it names)."""
        peer = str(getattr(self.transport.getPeer(), "host", "")) if self.transport is not None else ""
        if not self.site.trusted_proxies or not self.requests:
            return peer
        request = self.requests[-1]
        headers = request.requestHeaders

        def values(name: bytes) -> list[str]:
            return [v.decode("latin-1") for v in headers.getRawHeaders(name, [])]

        found = client_behind_proxies(peer, self.site.trusted_proxies, forwarded=values(b"forwarded"),
                                      x_forwarded_for=values(b"x-forwarded-for"),
                                      x_forwarded_proto=values(b"x-forwarded-proto"))
        request.forwarded = found  # type: ignore[attr-defined]
        if found.ip != peer:
            port = getattr(request.client, "port", 0)
            request.client = (IPv6Address if ":" in found.ip else IPv4Address)("TCP", found.ip, port)
        return found.ip

    def allHeadersReceived(self) -> None:
        site = self.site
        host = self._client()
        if self._command not in (b"GET", b"HEAD", b"OPTIONS"):
            if not site.writes.allow(host, site.clock.seconds()):
                site.counters["writes_refused"] += 1
                self._respond_and_close(b"429 Too Many Requests", b"too many requests from this address\n")
                return
        limit = site.max_body_bytes
        if self.length is not None and self.length > limit:
            self.site.counters["bodies_refused"] += 1
            self._respond_and_close(b"413 Payload Too Large",
                                    b"request body over %d bytes\n" % limit)
            return
        self._body_bytes = 0
        super().allHeadersReceived()

    def rawDataReceived(self, data: bytes) -> None:
        # Body bytes (both for Content-Length and chunked bodies) come here.
        self._body_bytes += len(data)
        # A chunked body's framing adds a little; allow it.
        if self._body_bytes > self.site.max_body_bytes + 1024 and self.length is None:
            self.site.counters["bodies_refused"] += 1
            self._respond_and_close(b"413 Payload Too Large",
                                    b"request body over %d bytes\n" % self.site.max_body_bytes)
            return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        self._cancel_deadline()
        if self._refused:
            return  # answered already; the request never reaches a resource
        super().allContentReceived()

    def connectionLost(self, reason: Any) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)


class ProxiedRequest(Request):
    """A request that believes a trusted proxy on whether the client used HTTPS."""

    forwarded: ForwardedClient | None = None

    def isSecure(self) -> bool:
        if self.forwarded is not None and self.forwarded.proto is not None:
            return self.forwarded.proto == "https"
        return bool(super().isSecure())


class LimitedSite(Site):
    """A :class:`twisted.web.server.Site` whose connections are :class:`LimitedChannel`.

    :param max_body_bytes: ``[http] max_body_bytes``.
    :param request_timeout_s: ``[http] request_timeout_seconds``.
    :param clock: runs the request deadlines (the reactor; a ``task.Clock`` in tests).
    :param trusted_proxies: ``[http] trusted_proxies`` (parsed).
    :param access_log: ``[http] access_log``.
    :param collider: this is collider's own listener (its ``/ROOM/CLIENT`` paths hold client ids).
    """

    protocol = LimitedChannel  # HTTP/1.1 only: we offer no h2 by ALPN
    requestFactory = ProxiedRequest

    def __init__(self, resource: Any, *, max_body_bytes: int, request_timeout_s: float, clock: Any,
                 writes_per_second: int = 20, trusted_proxies: tuple[Network, ...] = (), access_log: str = "on",
                 collider: bool = False) -> None:
        super().__init__(resource)
        self.trusted_proxies = trusted_proxies
        self.access_log = access_log
        self.collider = collider
        self.clock = clock
        #: write requests per client address (token buckets, bounded memory)
        self.writes = ReplyRateLimiter(writes_per_second)
        self.max_body_bytes = max_body_bytes
        self.request_timeout_s = request_timeout_s
        self.displayTracebacks = False
        #: refusals, for metrics
        self.counters = {"bodies_refused": 0, "request_timeouts": 0, "writes_refused": 0}

    def log(self, request: Any) -> None:
        """One access log line per request, as ``[http] access_log`` says."""
        if self.access_log == "off":
            return
        if self.access_log == "on":
            super().log(request)
            return
        if self._logFile is None:
            return
        address = truncate_address(str(getattr(request.getClientAddress(), "host", "")))
        path = anonymise_path(request.uri.decode("latin-1"), collider_site=self.collider)
        line = '{ip} - - {time} "{method} {path} {proto}" {code} {length}\n'.format(
            ip=address, time=self._logDateTime, method=request.method.decode("latin-1"), path=path,
            proto=request.clientproto.decode("latin-1"), code=request.code, length=request.sentLength or "-")
        self._logFile.write(line)


def finish_deferred(request: Any, d: Any) -> bytes | int:
    """A resource's answer: the body now if ``d`` (a Deferred of bytes) has fired, else written when it does.

    In one process the hub answers at once and this returns the bytes as a
    plain ``render`` would; with shared rooms (``[redis]``) it returns
    ``NOT_DONE_YET`` and finishes the request when Redis has answered.
    """
    box: list[bytes] = []
    d.addCallback(box.append)
    if box:
        return box[0]
    from twisted.web.server import NOT_DONE_YET

    def write(_: Any) -> None:
        if not request._disconnected:
            request.write(box[0])
            request.finish()

    d.addCallback(write)
    d.addErrback(lambda f: log.failure("http: a deferred answer failed", f))
    return NOT_DONE_YET
