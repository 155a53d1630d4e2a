"""A public server's edges, probed on real sockets: Origins, close codes, silent sockets, odd static paths."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory

from tests.integration.test_tls_stack import StackCase
from tests.ops.support import Collect, bound, read_http_response
from tests.signaling.webcase import WebCase, make_config
from tests.signaling.wsclient import async_test, http, ws_connect
from tests.support import Event, after_each_call
from webrtcstack.signaling.protocol import REGISTER_TIMEOUT_CODE, TOO_MANY_PINGS_CODE, SignalingServerProtocol


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


class BodyAndDeadlineTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(http={"max_body_bytes": "65536", "request_timeout_seconds": "15"}))

    async def raw(self, data: bytes) -> Collect:
        proto = Collect(data)
        await TCP4ClientEndpoint(reactor, "127.0.0.1", self.port).connect(Factory.forProtocol(lambda: proto))
        self.addCleanup(lambda: proto.done)
        return proto

    @async_test
    async def test_large_content_length_refused_before_reading(self) -> None:
        """A 100 MB POST to /message gets 413 from its headers alone: the answer comes with 1 MB of the body sent, and the resource never runs."""
        client = (await self.join("room"))["params"]["client_id"]
        proto = await self.raw(f"POST /message/room/{client} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n".encode()
                               + b"x" * 1_000_000)
        code, _, body, _ = await read_http_response(proto)
        self.assertEqual(code, 413, body)
        await proto.done.addTimeout(5, reactor)
        self.assertEqual(self.app.site.counters["bodies_refused"], 1)
        self.assertFalse(self.app.hub.storage.get_room("room").members[client].messages)

    @async_test
    async def test_chunked_body_cut_off(self) -> None:
        """A chunked body is refused with 413 once past max_body_bytes, without reaching the resource."""
        client = (await self.join("room"))["params"]["client_id"]
        head = f"POST /message/room/{client} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        chunk = b"4000\r\n" + b"y" * 0x4000 + b"\r\n"
        proto = await self.raw(head + chunk * 8)  # 128 KiB of body
        code, _, _, _ = await read_http_response(proto)
        self.assertEqual(code, 413)
        self.assertFalse(self.app.hub.storage.get_room("room").members[client].messages)

    @async_test
    async def test_small_body_still_served(self) -> None:
        """A body under the limit is served as before."""
        client = (await self.join("room"))["params"]["client_id"]
        self.assertEqual((await self.message("room", client, {"type": "offer", "sdp": "v=0"}))["result"], "SUCCESS")

    @async_test
    async def test_slow_request_gets_408(self) -> None:
        """Headers trickled in past request_timeout_seconds get 408 and the connection closes; a prompt request meanwhile is served."""
        slow = await self.raw(b"GET / HTTP/1.1\r\nHo")
        self.clock.advance(10)
        slow.transport.write(b"st: x\r\n")  # still trickling: it does not reset the deadline
        code, _, _ = await http("GET", self.url + "/params")
        self.assertEqual(code, 200)
        self.clock.advance(5)
        code, _, body, _ = await read_http_response(slow)
        self.assertEqual(code, 408, body)
        await slow.done.addTimeout(5, reactor)
        self.assertEqual(self.app.site.counters["request_timeouts"], 1)

    @async_test
    async def test_idle_connection_closed(self) -> None:
        """A connection that sends nothing is closed after request_timeout_seconds."""
        idle = await self.raw(b"")
        self.clock.advance(15)
        await idle.done.addTimeout(5, reactor)


class PerAddressTests(StackCase):
    def setUp(self) -> None:
        self.top = self.start("[turn]\nenabled = no\n[http]\nlisten = 127.0.0.1:0\nmax_connections_per_ip = 3\n"
                              "[metrics]\nlisten = 127.0.0.1:0\n")
        self.port = bound(self.top, "http")

    async def hold(self, source: str) -> Collect:
        proto = Collect(b"GET / HTTP/1.1\r\nHo")  # a slowloris start: never finishes its headers
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=(source, 0))
        await endpoint.connect(Factory.forProtocol(lambda: proto))
        self.addCleanup(lambda: proto.done)
        self.addCleanup(proto.transport.loseConnection)
        return proto

    @async_test
    async def test_one_address_cannot_take_every_slot(self) -> None:
        """With max_connections_per_ip = 3, a 4th connection from 127.0.0.1 is closed at once, while 127.0.0.2 still joins a room; /healthz stays ok."""
        budget = self.top.runtime.connection_budgets["http"]
        opened = Event(lambda: budget.open == 3)
        self.addCleanup(after_each_call(budget, "opened", opened))
        for _ in range(3):
            await self.hold("127.0.0.1")
        await opened.wait(5)
        fourth = await self.hold("127.0.0.1")
        await fourth.done.addTimeout(5, reactor)
        self.assertEqual((budget.refused, budget.refused_per_address), (1, 1))
        other = Collect(b"POST /join/room HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=("127.0.0.2", 0)).connect(
            Factory.forProtocol(lambda: other))
        code, _, body, _ = await read_http_response(other)
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["result"], "SUCCESS")
        await other.done.addTimeout(5, reactor)


class SaturatedHealthTests(StackCase):
    def setUp(self) -> None:
        self.top = self.start("[turn]\nenabled = no\n[http]\nlisten = 127.0.0.1:0\nmax_connections = 2\n"
                              "[metrics]\nlisten = 127.0.0.1:0\n")
        self.port = bound(self.top, "http")

    @async_test
    async def test_healthz_degraded_while_full(self) -> None:
        """/healthz says ok, then 503 "degraded" while the HTTP connection limit is reached, then ok again."""
        health = f"http://127.0.0.1:{bound(self.top, 'metrics')}/healthz"
        self.assertEqual((await http("GET", health))[:1], (200,))
        budget = self.top.runtime.connection_budgets["http"]
        full = Event(lambda: budget.open == 2)
        self.addCleanup(after_each_call(budget, "opened", full))
        held = []
        for _ in range(2):
            proto = Collect(b"GET / HTTP/1.1\r\nHo")
            await TCP4ClientEndpoint(reactor, "127.0.0.1", self.port).connect(Factory.forProtocol(lambda: proto))
            held.append(proto)
        await full.wait(5)
        code, _, body = await http("GET", health)
        self.assertEqual(code, 503)
        self.assertIn(b"degraded", body)
        freed = Event(lambda: budget.open == 0)
        self.addCleanup(after_each_call(budget, "closed", freed))
        for proto in held:
            proto.transport.loseConnection()
            await proto.done.addTimeout(5, reactor)
        await freed.wait(5)
        self.assertEqual((await http("GET", health))[:2][0], 200)


class WriteRateTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(http={"writes_per_second_per_ip": "3"}))

    @async_test
    async def test_write_routes_are_rate_limited_per_address(self) -> None:
        """Past writes_per_second_per_ip, joins and collider POSTs from one address get 429 (reads still work); a second later writes pass again."""
        for _ in range(3):
            self.assertEqual((await http("POST", f"{self.url}/join/room{_}"))[0], 200)
        self.assertEqual((await http("POST", f"{self.url}/join/other"))[0], 429)
        self.assertEqual((await http("POST", f"{self.url}/collider/room0/x", b"m"))[0], 429)
        self.assertEqual((await http("GET", f"{self.url}/params"))[0], 200)
        self.assertEqual(self.app.site.counters["writes_refused"], 2)
        self.clock.advance(1)
        self.assertEqual((await http("POST", f"{self.url}/join/other"))[0], 200)


class QueuedBytesTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(http={"writes_per_second_per_ip": "1000"}))

    @async_test
    async def test_collider_posts_bounded_in_bytes(self) -> None:
        """65,000-byte collider POSTs for a peer that never registers: the 17th passes max_queued_bytes (1 MiB) and gets collider's queue-full error; held bytes stay under it."""
        client = (await self.join("room"))["params"]["client_id"]
        await self.join("room")
        answers = [await http("POST", f"{self.url}/collider/room/{client}", b"m" * 65000) for _ in range(20)]
        codes = [code for code, _, _ in answers]
        self.assertEqual(codes, [200] * 16 + [500] * 4)
        self.assertIn(b"Too many messages queued", answers[-1][2])
        self.assertLessEqual(self.app.hub.buffers.held, 1 << 20)
        self.assertEqual(self.app.hub.buffers.held, 16 * 65000)


def masked_text_frame(payload: bytes) -> bytes:
    """One client-to-server WebSocket text frame (masked, as RFC 6455 requires of clients)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class SlowReaderTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(signaling={"messages_per_second": "100000", "message_burst": "100000",
                                              "max_send_buffer_bytes": "262144"}))

    @async_test
    async def test_peer_that_never_reads_is_closed(self) -> None:
        """A room peer that never reads is closed (4009) once 256 KiB wait unread beyond the transport's buffer; the sender keeps its socket."""
        a = (await self.join("room"))["params"]["client_id"]
        b = (await self.join("room"))["params"]["client_id"]
        handshake = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n")
        register = json.dumps({"cmd": "register", "roomid": "room", "clientid": a}).encode()

        def a_bound() -> bool:
            peer = self.app.hub.peer("room", a)
            return peer is not None and peer.conn is not None

        bound_a = self.watch(a_bound, (SignalingServerProtocol, "onMessage"))
        slow = Collect(handshake.encode())
        await TCP4ClientEndpoint(reactor, "127.0.0.1", self.port).connect(Factory.forProtocol(lambda: slow))
        self.addCleanup(lambda: slow.done)
        self.addCleanup(lambda: slow.transport.abortConnection())
        await slow.read_until(b"\r\n\r\n")  # 101 Switching Protocols
        slow.transport.write(masked_text_frame(register))
        slow.transport.pauseProducing()  # never read again
        await bound_a.wait(5)
        sender = await self.registered("room", b)
        factory = self.app.signaling_factory
        closed = self.watch(lambda: factory.slow_readers_closed > 0, (SignalingServerProtocol, "deliver"))
        message = json.dumps({"cmd": "send", "msg": "s" * 60000})
        for _ in range(400):  # 24 MB offered, far more than every buffer on the way holds
            sender.send(message)
        await closed.wait(30)
        self.assertEqual(factory.slow_readers_closed, 1)
        self.assertFalse(sender.is_closed)


class PingFloodTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(signaling={"messages_per_second": "5", "message_burst": "10"}))

    @async_test
    async def test_ping_flood_closed(self) -> None:
        """Pings count against the message rate: past the burst the socket is closed with 4029; pings within it are answered."""
        ws = await self.ws()
        assert ws.proto is not None
        for _ in range(100):
            ws.proto.sendPing()
        self.assertEqual(await ws.wait_closed(), TOO_MANY_PINGS_CODE)
