"""A trial mixin that serves ``build_web`` on 127.0.0.1 with a ``task.Clock`` for the hub's time."""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet import reactor, task

from tests.support import Event, after_each_call

from tests.signaling.wsclient import WsClient, http, http_json, ws_connect
from webrtcstack.config import StackConfig, parse_config
from webrtcstack.signaling.protocol import SignalingServerProtocol
from webrtcstack.web import WebApp, build_web

SECRET = "test-secret-0123"


def make_config(**sections: dict[str, str]) -> StackConfig:
    """A config from ``section={key: value}`` overrides (pings off unless asked)."""
    sections.setdefault("signaling", {})
    sections["signaling"].setdefault("ping_interval_seconds", "0")
    sections.setdefault("turn", {})
    sections["turn"].setdefault("listen", "127.0.0.1:3478")
    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {v}" for k, v in keys.items())
    return parse_config("\n".join(lines) + "\n")


class WebCase:
    """Start the web app; ``self.url``, ``self.port``, ``self.clock``, ``self.app``."""

    app: WebApp
    clock: task.Clock
    port: int
    collider_port: int | None

    def start_web(self, config: StackConfig | None = None) -> WebApp:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.app = build_web(config or make_config(), self.clock, (SECRET,))
        self._clients: list[WsClient] = []
        listening = reactor.listenTCP(0, self.app.site, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)  # type: ignore[attr-defined]
        self.port = listening.getHost().port
        self.url = f"http://127.0.0.1:{self.port}"
        self.collider_port = None
        if self.app.collider_site is not None:
            collider = reactor.listenTCP(0, self.app.collider_site, interface="127.0.0.1")
            self.addCleanup(collider.stopListening)  # type: ignore[attr-defined]
            self.collider_port = collider.getHost().port
        self.addCleanup(self.app.stop)  # type: ignore[attr-defined]
        self.addCleanup(self._close_clients)  # type: ignore[attr-defined]
        return self.app

    def watch(self, condition: Callable[[], bool], *hooks: tuple[Any, str]) -> Event:
        """An :class:`Event` checked after each call of the hooked ``(object, method name)`` pairs.

        Set it up before the action whose effect it waits for; the hooks
        are undone at cleanup.
        """
        event = Event(condition)
        for obj, name in hooks:
            self.addCleanup(after_each_call(obj, name, event))  # type: ignore[attr-defined]
        return event

    def sockets_closed(self, below: int = 1) -> Event:
        """Fires once fewer than ``below`` server-side sockets are open (checked as each one closes)."""
        factory = self.app.signaling_factory  # the one factory behind /ws and the collider port
        return self.watch(lambda: factory is None or factory.open_count < below, (SignalingServerProtocol, "onClose"))

    async def _close_clients(self) -> None:
        gone = self.sockets_closed()
        for client in self._clients:
            if not client.is_closed and client.proto is not None:
                await client.close()
        # the server side sees its connections go
        await gone.wait(5)
        # Autobahn batches its handshake timers into one reactor call per
        # second; a cancelled timer leaves that call pending until its time.
        # Wait for exactly those calls (known times, not a poll).
        for call in reactor.getDelayedCalls():
            if getattr(call.func, "__name__", "") == "_notify_bucket":
                await task.deferLater(reactor, max(0.0, call.getTime() - reactor.seconds()) + 0.001, lambda: None)

    async def ws(self, path: str = "/ws", origin: str | None = None, port: int | None = None) -> WsClient:
        """A WebSocket to our site (closed at cleanup)."""
        client = await ws_connect(port or self.port, path, origin=origin)
        self._clients.append(client)
        return client

    async def join(self, room: str, query: str = "") -> dict[str, Any]:
        """``POST /join/<room>`` and its JSON answer."""
        return await http_json("POST", f"{self.url}/join/{room}{query}")

    async def post(self, path: str, body: bytes | str = b"") -> tuple[int, Any, bytes]:
        """POST to a path of our site."""
        data = body.encode() if isinstance(body, str) else body
        return await http("POST", self.url + path, data)

    async def message(self, room: str, client: str, message: dict[str, Any]) -> dict[str, Any]:
        """``POST /message`` with a JSON message."""
        code, _, data = await self.post(f"/message/{room}/{client}", json.dumps(message))
        assert code == 200, (code, data)
        return json.loads(data)

    async def registered(self, room: str, client: str) -> WsClient:
        """A socket registered as (room, client)."""
        ws = await self.ws()
        await self.register(ws, room, client)
        return ws

    async def register(self, ws: WsClient, room: str, client: str) -> None:
        """Send ``register`` on ``ws`` and wait until the hub has bound the socket."""
        def bound() -> bool:
            peer = self.app.hub.peer(room, client)
            return peer is not None and peer.conn is not None

        done = self.watch(bound, (SignalingServerProtocol, "onMessage"))  # after the whole frame is handled
        ws.send({"cmd": "register", "roomid": room, "clientid": client})
        await done.wait(5)

    async def unbound(self, room: str, client: str) -> None:
        """Wait until the hub has seen ``client``'s socket go (the client stays for the grace period)."""
        def gone() -> bool:
            peer = self.app.hub.peer(room, client)
            return peer is None or peer.conn is None

        await self.watch(gone, (self.app.hub, "handle_disconnect")).wait(5)
