"""A public server's edges, probed on real sockets: Origins, close codes, silent sockets, odd static paths."""

from __future__ import annotations

import base64
import os
from typing import Any

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from twisted.internet import reactor

from tests.integration.test_tls_stack import StackCase
from tests.ops.support import bound
from tests.signaling.webcase import WebCase, make_config
from tests.signaling.wsclient import async_test, http, ws_connect
from webrtcstack.signaling.protocol import REGISTER_TIMEOUT_CODE


def upgrade_headers(origin: str | None) -> dict[str, str]:
    """The headers of a WebSocket opening handshake, with ``origin`` (None: no Origin header)."""
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    if origin is not None:
        headers["Origin"] = origin
    return headers


class OriginTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web()

    @async_test
    async def test_refused_origins_get_403(self) -> None:
        """`null`, `file://`, garbage and a foreign site get 403 (not Autobahn's 400), and each is counted."""
        for origin in ("null", "file://", "not an origin", "https://evil.example"):
            code, _, body = await http("GET", f"{self.url}/ws", headers=upgrade_headers(origin))
            self.assertEqual((origin, code), (origin, 403), body)
        self.assertEqual(self.app.signaling_factory.refused_origins, 4)

    @async_test
    async def test_own_origin_and_none_are_accepted(self) -> None:
        """The site's own origin, and no Origin header (native clients), get 101 Switching Protocols."""
        for origin in (self.url, None):
            ws = await self.ws(origin=origin)
            self.assertIsNotNone(ws.proto)


class AnyOriginTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(signaling={"allowed_origins": "*"}))

    @async_test
    async def test_null_origin_allowed_under_star(self) -> None:
        """With `allowed_origins = *`, the `null` origin (a file:// page, a sandboxed frame) opens a socket."""
        ws = await self.ws(origin="null")
        self.assertIsNotNone(ws.proto)


class CloseCodeTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(signaling={"max_message_bytes": "256"}))

    @async_test
    async def test_oversize_frame_closes_with_1009(self) -> None:
        """A frame past Autobahn's cap (4 x max_message_bytes) ends with a close frame 1009, not a reset (1006)."""
        ws = await self.ws()
        ws.send(b"x" * 2000)
        self.assertEqual(await ws.wait_closed(), 1009)

    @async_test
    async def test_invalid_utf8_closes_with_1007(self) -> None:
        """A text frame that is not UTF-8 ends with a close frame 1007."""
        ws = await self.ws()
        assert ws.proto is not None
        ws.proto.sendMessage(b'{"cmd": "\xff\xfe"}', False)
        self.assertEqual(await ws.wait_closed(), 1007)


class SilentSocketTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(signaling={"register_timeout_seconds": "10"}))

    @async_test
    async def test_unregistered_socket_is_counted_then_closed(self) -> None:
        """A socket that never registers is counted while open and closed with a close frame after the register timeout; a registered one stays."""
        factory = self.app.signaling_factory
        silent = await self.ws()
        self.assertEqual(factory.unregistered_count, 1)
        gone = self.sockets_closed()
        self.clock.advance(9.9)
        self.assertFalse(silent.is_closed)
        self.clock.advance(0.1)
        self.assertEqual(await silent.wait_closed(), REGISTER_TIMEOUT_CODE)
        await gone.wait(5)
        self.assertEqual((factory.unregistered_count, factory.unregistered_closed), (0, 1))

        client = (await self.join("room"))["params"]["client_id"]
        registered = await self.registered("room", client)
        self.clock.advance(60)
        self.assertFalse(registered.is_closed)
        self.assertEqual(factory.unregistered_count, 0)


class StaticPathTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    @async_test
    async def test_nul_and_invalid_bytes_are_404(self) -> None:
        """/js/%00, /js/a%00b, /css/%ff and a control byte get 404 and log no error or traceback."""
        for path in ("/js/%00", "/js/call.js%00.txt", "/css/%ff", "/images/%01"):
            code, _, _ = await http("GET", self.url + path)
            self.assertEqual((path, code), (path, 404))
        code, _, body = await http("GET", self.url + "/js/call.js")
        self.assertEqual(code, 200)
        bad = [e for e in self.events if e.get("log_level") in (LogLevel.error, LogLevel.critical) or e.get("log_failure")]
        self.assertEqual(bad, [])


class ReloadAppliesTests(StackCase):
    """The keys a reload reports as applied really change what the running stack does."""

    def setUp(self) -> None:
        self.text = ("[turn]\nenabled = no\n[http]\nlisten = 127.0.0.1:0\nmax_connections = 100\n"
                     "[signaling]\nping_interval_seconds = 0\nmax_message_bytes = 65536\n")
        self.top = self.start(self.text, from_file=True)
        self.port = bound(self.top, "http")

    def reload(self, text: str) -> list[str]:
        with open(self.path, "w") as f:
            f.write(text + "[metrics]\nenabled = no\n")
        self.assertTrue(self.top.reload())
        last = self.top.runtime.last_reload
        self.assertEqual(last["needs_restart"], [], last)
        return list(last["applied"])

    @async_test
    async def test_max_connections_reloaded(self) -> None:
        """[http] max_connections reloaded to 1: with one connection open, the next is closed at once."""
        applied = self.reload(self.text.replace("max_connections = 100", "max_connections = 1"))
        self.assertIn("[http] max_connections", applied)
        first = await ws_connect(self.port)
        self.addCleanup(first.close)
        with self.assertRaises(ConnectionError):
            await ws_connect(self.port)

    @async_test
    async def test_ping_interval_reloaded(self) -> None:
        """[signaling] ping_interval_seconds reloaded from 0 to 1: a socket opened after it gets pings."""
        self.assertIn("[signaling] ping_interval_seconds",
                      self.reload(self.text.replace("ping_interval_seconds = 0", "ping_interval_seconds = 1")))
        ws = await ws_connect(self.port)
        self.addCleanup(ws.close)
        await ws.pinged.addTimeout(5, reactor)

    @async_test
    async def test_max_message_bytes_reloaded(self) -> None:
        """[signaling] max_message_bytes reloaded to 256: a socket opened after it is closed with 1009 past 4 x 256 bytes."""
        self.assertIn("[signaling] max_message_bytes",
                      self.reload(self.text.replace("max_message_bytes = 65536", "max_message_bytes = 256")))
        ws = await ws_connect(self.port)
        ws.send(b"x" * 2000)
        self.assertEqual(await ws.wait_closed(), 1009)
