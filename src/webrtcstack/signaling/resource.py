"""collider's HTTP API as twisted.web resources: ``POST``/``DELETE /<room>/<client>`` and ``/status``.

Mounted twice: at the root of the collider-exact site (``[signaling]
listen``) and under ``/collider`` on the main site (the ``wss_post_url`` we
hand out), so one port and one certificate can serve everything.
"""

from __future__ import annotations

import html
import json

from twisted.web.resource import Resource
from twisted.web.server import Request

from webrtcstack.rooms.model import is_valid_id
from webrtcstack.signaling.hub import SignalingError
from webrtcstack.signaling.messages import Errors
from webrtcstack.signaling.protocol import HubRunner

__all__ = ["ColliderStatusResource", "ColliderClientResource", "ColliderRootResource"]


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
        if request.method == b"POST":
            body = request.content.read() if request.content is not None else b""
            if not body:
                return _http_error(request, runner, "Empty request body")
            if len(body) > self.max_message_bytes:
                return _http_error(request, runner, "Failed to send the message: " + Errors.too_large(self.max_message_bytes))
            try:
                effects = runner.hub.handle_post(room_id, client_id, body.decode("utf-8", "replace"), now=runner.now())
            except SignalingError as e:
                return _http_error(request, runner, f"Failed to send the message: {e}")
            runner.apply(effects)
            runner.rearm()
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"OK\n"
        if request.method == b"DELETE":
            runner.apply(runner.hub.handle_delete(room_id, client_id, now=runner.now()))
            runner.rearm()
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"OK\n"
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
