"""Test helpers: a small Autobahn WebSocket client and an HTTP client on the real reactor."""

from __future__ import annotations

import functools
import json
from io import BytesIO
from collections.abc import Callable, Coroutine
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

TIMEOUT = 15.0  # an upper bound for a wait on an event (the suite runs beside CPU-heavy multi-process tests)


def async_test(f: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., defer.Deferred]:
    """Run an ``async def`` test method as a Deferred (for trial)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred:
        return defer.ensureDeferred(f(*args, **kwargs))

    return wrapper


def _with_timeout(d: defer.Deferred, seconds: float = TIMEOUT) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


class WsClientProtocol(WebSocketClientProtocol):
    """Collects text frames; fires ``opened``/``closed`` on the client object."""

    client: WsClient

    def onOpen(self) -> None:
        self.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.client._message(payload.decode("utf-8"))

    def onPing(self, payload: bytes) -> None:
        self.client.pings += 1
        if not self.client.pinged.called:
            self.client.pinged.callback(None)
        super().onPing(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.client._closed_with(code, reason)


class WsClient:
    """One WebSocket connection for a test: ``send``, ``next``, ``close``."""

    def __init__(self) -> None:
        self.proto: WsClientProtocol | None = None
        self.open_d: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self.queue: defer.DeferredQueue = defer.DeferredQueue()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.pings = 0
        #: fires at the first ping from the server
        self.pinged: defer.Deferred = defer.Deferred()
        self.is_closed = False

    def _opened(self, proto: WsClientProtocol) -> None:
        self.proto = proto
        self.open_d.callback(self)

    def _message(self, text: str) -> None:
        self.queue.put(text)

    def _closed_with(self, code: int | None, reason: str | None) -> None:
        self.is_closed = True
        self.close_code, self.close_reason = code, reason
        if not self.open_d.called:
            self.open_d.errback(ConnectionError(f"handshake refused: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback(code)

    def send(self, value: Any) -> None:
        """Send a dict as JSON text, or bytes/str as they are."""
        assert self.proto is not None
        if isinstance(value, dict):
            value = json.dumps(value)
        if isinstance(value, str):
            value = value.encode("utf-8")
        self.proto.sendMessage(value, False)

    async def next_raw(self, timeout: float = TIMEOUT) -> str:
        """The next frame's text."""
        return await _with_timeout(self.queue.get(), timeout)

    async def next(self, timeout: float = TIMEOUT) -> dict[str, str]:
        """The next frame as a dict (must be one envelope ending in a newline)."""
        text = await self.next_raw(timeout)
        assert text.endswith("\n"), text
        return json.loads(text)

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        """Wait for the server to close the socket."""
        return await _with_timeout(self.closed, timeout)

    async def close(self) -> None:
        """Close from our side and wait until it is closed."""
        if not self.is_closed and self.proto is not None:
            self.proto.sendClose(1000)
        await self.wait_closed()

    def drop(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        assert self.proto is not None
        self.proto.transport.abortConnection()


async def ws_connect(port: int, path: str = "/ws", origin: str | None = None, host: str = "127.0.0.1",
                     **options: Any) -> WsClient:
    """Open a WebSocket to ``ws://host:port/path``; raise ConnectionError if refused.

    :param options: more Autobahn client options (``setProtocolOptions``).
    """
    client = WsClient()
    factory = WebSocketClientFactory(f"ws://{host}:{port}{path}", origin=origin)
    factory.setProtocolOptions(openHandshakeTimeout=TIMEOUT, **options)

    def build(addr: Any) -> WsClientProtocol:
        proto = WsClientProtocol()
        proto.factory = factory
        proto.client = client
        return proto

    factory.buildProtocol = build  # type: ignore[method-assign]
    reactor.connectTCP(host, port, factory)
    try:
        await _with_timeout(client.open_d)
    except ConnectionError:
        await client.closed
        raise
    return client


async def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Headers, bytes]:
    """One HTTP request: ``(code, headers, body)``."""
    agent = Agent(reactor)
    hdrs = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    producer = FileBodyProducer(BytesIO(body)) if body is not None else None
    response = await _with_timeout(agent.request(method.encode(), url.encode(), hdrs, producer))
    data = await _with_timeout(readBody(response))
    return response.code, response.headers, data


async def http_json(method: str, url: str, body: bytes | None = None) -> Any:
    """An HTTP request whose 200 answer is JSON."""
    code, _, data = await http(method, url, body)
    assert code == 200, (code, data)
    return json.loads(data)
