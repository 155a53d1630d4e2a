"""The room server as twisted.web resources (apprtc's routes), and the call page.

Routes: ``GET /``, ``GET /r/<room>``, ``POST /join/<room>``, ``POST
/message/<room>/<client>``, ``POST /leave/<room>/<client>``, ``POST
/bye/<room>/<client>`` (collider's disconnect notice, treated as leave),
``GET /params``, ``POST``/``GET /v1alpha/iceconfig``.  Ids outside
``[A-Za-z0-9_-]{1,64}`` get 404, a known path with the wrong method 405.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from webrtcstack.config import StackConfig
from webrtcstack.httpsite import finish_deferred
from webrtcstack.rooms.credentials import ice_servers, ice_urls
from webrtcstack.rooms.model import ID_PATTERN, Result
from webrtcstack.rooms.params import Query, SiteUrls, room_parameters
from webrtcstack.signaling.protocol import HubRunner

__all__ = ["RoomServerResource", "render_template", "script_json"]

log = Logger()

_ID = "(" + ID_PATTERN + ")"


def _template(name: str) -> str:
    return importlib.resources.files("webrtcstack").joinpath("templates", name).read_text("utf-8")


_JS_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def script_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element."""
    return json.dumps(value).translate(_JS_ESCAPES)


def render_template(name: str, values: dict[str, str]) -> bytes:
    """Fill ``{{key}}`` slots of a template; values are inserted as given (escape them first)."""
    text = _template(name)
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), ""), text).encode("utf-8")


def _loading_params(params: dict[str, Any]) -> dict[str, Any]:
    """The object the page script starts from (apprtc's ``loadingParams`` names)."""
    return {
        "errorMessages": params["error_messages"],
        "warningMessages": params["warning_messages"],
        "headerMessage": params["header_message"],
        "isLoopback": json.loads(params["is_loopback"]),
        "roomId": params.get("room_id", ""),
        "roomLink": params.get("room_link", ""),
        "mediaConstraints": json.loads(params["media_constraints"]),
        "offerOptions": json.loads(params["offer_options"]),
        "peerConnectionConfig": json.loads(params["pc_config"]),
        "peerConnectionConstraints": json.loads(params["pc_constraints"]),
        "iceServerRequestUrl": params["ice_server_url"],
        "iceServerTransports": params["ice_server_transports"],
        "wssUrl": params["wss_url"],
        "wssPostUrl": params["wss_post_url"],
        "bypassJoinConfirmation": json.loads(params["bypass_join_confirmation"]),
        "versionInfo": json.loads(params["version_info"]),
    }


class RoomServerResource(Resource):
    """Every room-server route, matched on the whole path (as webapp2 does).

    :param runner: the signaling hub runner (the hub holds the room registry).
    :param auth_secrets: TURN REST secrets; credentials come from the first.
    """

    isLeaf = True

    def __init__(self, config: StackConfig, runner: HubRunner, auth_secrets: tuple[str, ...], version: str = "") -> None:
        super().__init__()
        self.config = config
        self.runner = runner
        self.hub = runner.hub
        self.auth_secrets = auth_secrets
        self.version = version
        #: With ``[redis]``: maps this process's own ``(turn_urls, stun_urls)`` to those of the
        #: least loaded live nodes (set by the service; see webrtcstack.cluster.turnview).
        self.cluster_ice: Callable[[tuple[list[str], list[str]]], tuple[list[str], list[str]]] | None = None
        Handler = Callable[..., bytes]
        self.routes: list[tuple[re.Pattern[str], dict[bytes, Handler]]] = [
            (re.compile(r"/\Z"), {b"GET": self.index}),
            (re.compile(r"/r/" + _ID + r"\Z"), {b"GET": self.room_page}),
            (re.compile(r"/join/" + _ID + r"\Z"), {b"POST": self.join}),
            (re.compile(r"/message/" + _ID + "/" + _ID + r"\Z"), {b"POST": self.message}),
            (re.compile(r"/leave/" + _ID + "/" + _ID + r"\Z"), {b"POST": self.leave}),
            (re.compile(r"/bye/" + _ID + "/" + _ID + r"\Z"), {b"POST": self.leave}),
            (re.compile(r"/params\Z"), {b"GET": self.params}),
            (re.compile(r"/v1alpha/iceconfig\Z"), {b"POST": self.iceconfig, b"GET": self.iceconfig}),
        ]

    # -- plumbing ------------------------------------------------------------

    def render(self, request: Request) -> bytes:
        path = request.path.decode("utf-8", "replace")
        method = b"GET" if request.method == b"HEAD" else request.method
        for pattern, handlers in self.routes:
            m = pattern.match(path)
            if m is None:
                continue
            handler = handlers.get(method)
            if handler is None:
                request.setResponseCode(405)
                request.setHeader(b"Allow", b", ".join(handlers))
                request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
                return b"405 Method Not Allowed\n"
            return handler(request, *m.groups())
        request.setResponseCode(404)
        if request.method in (b"GET", b"HEAD"):  # a person followed a bad link: a page that says what to do
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            return render_template("notfound.html", {})
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"404 Not Found\n"

    def _query(self, request: Request) -> Query:
        raw = request.uri.split(b"?", 1)[1] if b"?" in request.uri else b""
        return Query(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))

    def _base_url(self, request: Request) -> str:
        if self.config.http.public_url:
            return self.config.http.public_url
        host = (request.getHeader(b"host") or b"localhost").decode("utf-8", "replace")
        return ("https://" if request.isSecure() else "http://") + host

    def _params(self, request: Request, room_id: str | None = None) -> dict[str, Any]:
        return room_parameters(
            self._query(request),
            urls=SiteUrls(self._base_url(request)),
            user_agent=(request.getHeader(b"user-agent") or b"").decode("utf-8", "replace"),
            header_message=self.config.rooms.header_message,
            bypass_join_confirmation=self.config.rooms.bypass_join_confirmation,
            version=self.version,
            room_id=room_id,
            allowed_option_hosts=self.config.rooms.allowed_option_hosts,
        )

    @staticmethod
    def _json(request: Request, value: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(value).encode("utf-8")

    def _page(self, request: Request, params: dict[str, Any]) -> bytes:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        loading = _loading_params(params)
        # Group calls (docs/rooms.md): the page asks for a mesh room when rooms may hold more than two.
        loading["groupCallSize"] = self.config.rooms.capacity
        return render_template("call.html", {
            "loading_params": script_json(loading),
            "include_loopback_js": params["include_loopback_js"],
        })

    # -- routes --------------------------------------------------------------

    def index(self, request: Request) -> bytes:
        """``GET /``: the landing page (create a random room or name one)."""
        return self._page(request, self._params(request))

    def room_page(self, request: Request, room_id: str) -> bytes | int:
        """``GET /r/<room>``: the call page, or the "room is full" page."""
        def page(full: bool) -> bytes:
            if full:
                request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
                request.setHeader(b"Cache-Control", b"no-store")
                return render_template("full.html", {})
            return self._page(request, self._params(request, room_id))

        rooms = self.hub.rooms
        cluster = self.runner.cluster
        # The page is ours, so it counts as a group-call client: it may join a mesh room.
        if rooms is None or cluster is None:
            return page(rooms is not None and rooms.is_full(room_id, mesh=True))
        d = cluster.peek(room_id)
        d.addCallback(lambda records: records[0] is not None
                      and len(records[0].members) >= rooms.capacity_of(records[0]))
        d.addErrback(lambda _: False)  # the page itself needs no shared state; /join will say what is wrong
        return finish_deferred(request, d.addCallback(page))

    def join(self, request: Request, room_id: str) -> bytes | int:
        """``POST /join/<room>``: a new client id, the initiator flag and the stored messages."""
        params = self._params(request, room_id)
        assert self.hub.rooms is not None
        if getattr(self.hub, "draining", False):
            # Set by webrtcstack.ops on SIGTERM: calls in progress go on, new joins are refused.
            return self._json(request, {"result": "ERROR", "params": {"messages": []},
                                        "error": "the server is shutting down; try again shortly"})
        runner = self.runner
        why = runner.unavailable()
        if why:
            return self._json(request, {"result": "ERROR", "params": {"messages": []},
                                        "error": f"the service is unavailable ({why}); try again shortly"})
        loopback = params["is_loopback"] == "true"
        mesh = self._query(request).get("mesh") == "1"
        d = runner.in_room(room_id, lambda: (self.hub.handle_join(room_id, loopback=loopback, mesh=mesh,
                                                                  now=runner.now()), []))

        def answer(outcome: Any) -> bytes:
            result = outcome[0]
            runner.rearm()
            if result.result is not Result.SUCCESS:
                out: dict[str, Any] = {"result": result.result.value, "params": {"messages": []}}
                if result.error:
                    out["error"] = result.error
                return self._json(request, out)
            params["client_id"] = result.client_id
            params["is_initiator"] = json.dumps(result.is_initiator)
            params["messages"] = list(result.messages)
            if result.mesh:  # the group-call extension (docs/rooms.md); apprtc's clients never get a mesh room
                params["mesh"] = "true"
                params["members"] = list(result.members)
            return self._json(request, {"result": "SUCCESS", "params": params})

        d.addCallback(answer)
        d.addErrback(self._unavailable, request, {"params": {"messages": []}})
        return finish_deferred(request, d)

    def _unavailable(self, failure: Any, request: Request, extra: dict[str, Any]) -> bytes:
        """Shared state out of reach (``[redis]``): apprtc's ERROR, and nothing half done."""
        log.warn("rooms: {path} failed: {error}", path=request.path.decode("utf-8", "replace"),
                 error=failure.getErrorMessage())
        return self._json(request, {"result": "ERROR", **extra,
                                    "error": f"the service is unavailable ({failure.getErrorMessage()}); try again shortly"})

    def message(self, request: Request, room_id: str, client_id: str) -> bytes | int:
        """``POST /message/<room>/<client>``: store while alone, else pass on through the hub."""
        body = request.content.read() if request.content is not None else b""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._json(request, {"result": "ERROR", "error": "the message is not UTF-8"})
        runner = self.runner
        why = runner.unavailable()
        if why:
            return self._json(request, {"result": "ERROR", "error": f"the service is unavailable ({why}); try again shortly"})
        d = runner.in_room(room_id, lambda: self.hub.handle_message(room_id, client_id, text, now=runner.now()))

        def answer(outcome: Any) -> bytes:
            result, effects = outcome
            runner.apply(effects)
            runner.rearm()
            out: dict[str, Any] = {"result": result.result.value}
            if result.error:
                out["error"] = result.error
            return self._json(request, out)

        d.addCallback(answer)
        d.addErrback(self._unavailable, request, {})
        return finish_deferred(request, d)

    def leave(self, request: Request, room_id: str, client_id: str) -> bytes | int:
        """``POST /leave/<room>/<client>`` (and ``/bye``): leave; always an empty 200."""
        runner = self.runner
        d = runner.in_room(room_id, lambda: self.hub.handle_leave(room_id, client_id, now=runner.now()))

        def done(outcome: Any) -> bytes:
            result, effects = outcome
            runner.apply(effects)
            runner.rearm()
            if result is not Result.SUCCESS:
                log.debug("leave {room}/{client}: {result}", room=room_id, client=client_id, result=result.value)
            return b""

        d.addCallback(done)
        d.addErrback(lambda f: log.warn("rooms: leave {room}/{client} failed: {error}", room=room_id,
                                        client=client_id, error=f.getErrorMessage()) or b"")
        return finish_deferred(request, d)

    def params(self, request: Request) -> bytes:
        """``GET /params``: the room-independent parameters."""
        return self._json(request, self._params(request))

    def iceconfig(self, request: Request) -> bytes:
        """``POST /v1alpha/iceconfig``: our STUN/TURN URLs with fresh REST credentials."""
        host = (request.getHeader(b"host") or b"").decode("utf-8", "replace")
        secret = self.auth_secrets[0] if self.auth_secrets else ""
        urls = None
        if self.cluster_ice is not None:
            urls = self.cluster_ice(ice_urls(self.config, host))
        return self._json(request, ice_servers(self.config, secret, host, now=self.runner.now(), urls=urls))

