"""collider's HTTP API as twisted.web resources: ``POST``/``DELETE /<room>/<client>`` and ``/status``.

Mounted twice: at the root of the collider-exact site (``[signaling]
listen``) and under ``/collider`` on the main site (the ``wss_post_url`` we
hand out), so one port and one certificate can serve everything.
"""

from __future__ import annotations

import html
import json
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from webrtcstack.httpsite import finish_deferred
from webrtcstack.rooms.model import is_valid_id
from webrtcstack.signaling.hub import SignalingError
from webrtcstack.signaling.messages import Errors
from webrtcstack.signaling.origin import origin_allowed
from webrtcstack.signaling.protocol import HubRunner, SignalingServerFactory

__all__ = ["ColliderStatusResource", "ColliderClientResource", "ColliderRootResource", "SignalingResource"]

log = Logger()


class SignalingResource(WebSocketResource):
    """``/ws``: the Origin check, then Autobahn's handshake.

    The Origin allow-list is decided here, the one place, before Autobahn
    sees the request: a refused origin gets ``403 Forbidden`` (also
    ``null``, ``file://`` and garbage, which Autobahn's own parser would
    answer with 400).  An allowed request is handed on without its
    ``Origin`` header, as Autobahn's own origin rules are not ours (it
    refuses ``null`` and an empty header even where we allow them).
    """

    def __init__(self, factory: SignalingServerFactory) -> None:
        super().__init__(factory)
        self.signaling_factory = factory

    def render(self, request: Request) -> bytes | int:
        factory = self.signaling_factory
        origin_raw = request.getHeader(b"origin")
        origin = origin_raw.decode("latin-1") if isinstance(origin_raw, bytes) else origin_raw
        host = request.getHeader(b"host")
        host_text = host.decode("latin-1") if isinstance(host, bytes) else (host or "")
        if not origin_allowed(origin, allowed=factory.allowed_origins, host_header=host_text,
                              public_url=factory.public_url):
            factory.refused_origins += 1
            log.info("signaling: refused Origin {origin!r} from {peer}", origin=origin,
                     peer=getattr(request.getClientAddress(), "host", "?"))
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Origin not allowed\n"
        request.requestHeaders.removeHeader(b"origin")
        # The per-address WebSocket limit counts the client the HTTP layer found (LimitedChannel
        # applies [http] trusted_proxies), not the proxy in front: hand it to the protocol Autobahn
        # builds inside super().render.
        factory.handshake_client = getattr(request.getClientAddress(), "host", None)
        return super().render(request)  # type: ignore[no-any-return]


def _unavailable(request: Request, failure: Any) -> bytes:
    """Shared state out of reach (``[redis]``): 503, nothing half done."""
    request.setResponseCode(503)
    request.setHeader(b"Retry-After", b"5")
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return f"Service unavailable: {failure.getErrorMessage()}\n".encode()


def _http_error(request: Request, runner: HubRunner, text: str) -> bytes:
    """collider's ``http.Error``: 500, plain text, the message and a newline."""
    runner.hub.counters.http_errors += 1
    request.setResponseCode(500)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return (text + "\n").encode("utf-8")


class ColliderStatusResource(Resource):
    """``/status``: uptime and socket counters, as collider reports them."""

    isLeaf = True

    def __init__(self, runner: HubRunner) -> None:
        super().__init__()
        self.runner = runner

    def render(self, request: Request) -> bytes:
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        request.setHeader(b"Access-Control-Allow-Methods", b"GET")
        request.setHeader(b"Content-Type", b"application/json")
        status = self.runner.hub.status(uptime_s=self.runner.now() - self.runner.started_at)
        return (json.dumps(status, separators=(",", ":")) + "\n").encode("ascii")


class ColliderClientResource(Resource):
    """``POST``/``DELETE /<room>/<client>`` (below ``prefix``); other methods get an empty 200.

    :param prefix: the path this API is mounted at (``b""`` or ``b"/collider"``).
    """

    isLeaf = True

    def __init__(self, runner: HubRunner, prefix: bytes, max_message_bytes: int) -> None:
        super().__init__()
        self.runner = runner
        self.prefix = prefix
        self.max_message_bytes = max_message_bytes

    def render(self, request: Request) -> bytes:
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        request.setHeader(b"Access-Control-Allow-Methods", b"POST, DELETE")
        path = request.path[len(self.prefix):].decode("utf-8", "replace")
        parts = path.split("/")
        if len(parts) != 3 or not is_valid_id(parts[1]) or not is_valid_id(parts[2]):
            return _http_error(request, self.runner, "Invalid path: " + html.escape(path))
        room_id, client_id = parts[1], parts[2]
        runner = self.runner
        why = runner.unavailable()
        if why and request.method in (b"POST", b"DELETE"):
            request.setResponseCode(503)
            request.setHeader(b"Retry-After", b"5")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return f"Service unavailable: {why}\n".encode()
        if request.method == b"POST":
            body = request.content.read() if request.content is not None else b""
            if not body:
                return _http_error(request, runner, "Empty request body")
            if len(body) > self.max_message_bytes:
                return _http_error(request, runner, "Failed to send the message: " + Errors.too_large(self.max_message_bytes))
            text = body.decode("utf-8", "replace")

            def post() -> tuple[str | None, list[Any]]:
                try:
                    return None, runner.hub.handle_post(room_id, client_id, text, now=runner.now())
                except SignalingError as e:
                    return str(e), []

            def posted(outcome: Any) -> bytes:
                error, effects = outcome
                if error is not None:
                    return _http_error(request, runner, f"Failed to send the message: {error}")
                runner.apply(effects)
                runner.rearm()
                request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
                return b"OK\n"

            return finish_deferred(request, runner.in_room(room_id, post).addCallback(posted).addErrback(
                lambda f: _unavailable(request, f)))
        if request.method == b"DELETE":
            def deleted(outcome: Any) -> bytes:
                runner.apply(outcome[1])
                runner.rearm()
                request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
                return b"OK\n"

            d = runner.in_room(room_id, lambda: (None, runner.hub.handle_delete(room_id, client_id, now=runner.now())))
            return finish_deferred(request, d.addCallback(deleted).addErrback(lambda f: _unavailable(request, f)))
        return b""


class ColliderRootResource(Resource):
    """collider's paths: ``/ws`` (exact), ``/status`` and ``/<room>/<client>`` below ``prefix``."""

    def __init__(self, runner: HubRunner, ws_resource: Resource | None, prefix: bytes, max_message_bytes: int) -> None:
        super().__init__()
        self.ws_resource = ws_resource
        self.status = ColliderStatusResource(runner)
        self.clients = ColliderClientResource(runner, prefix, max_message_bytes)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if not request.postpath:
            if path == b"ws" and self.ws_resource is not None:
                return self.ws_resource
            if path == b"status":
                return self.status
        return self.clients

    def render(self, request: Request) -> bytes:
        return self.clients.render(request)
