"""Signaling over real WebSockets and HTTP on 127.0.0.1: collider's protocol, the apprtc flow, limits."""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.trial import unittest

from tests.signaling.webcase import WebCase, make_config
from tests.signaling.wsclient import async_test, http, http_json
from webrtcstack.signaling.messages import Errors

OFFER = {"sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n", "type": "offer"}
ANSWER = {"sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n", "type": "answer"}


def candidate(n: int) -> dict:
    return {"type": "candidate", "label": 0, "id": "0", "candidate": f"candidate:{n} 1 udp 1 127.0.0.1 5000{n} typ relay"}


class ApprtcFlowTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web()

    @async_test
    async def test_call_flow(self) -> None:
        """The apprtc web client's whole flow: stored offer/candidates, answer over WS, late candidate via /message, leave + bye + DELETE."""
        a = (await self.join("room"))["params"]["client_id"]
        ws_a = await self.registered("room", a)
        self.assertEqual((await self.message("room", a, OFFER))["result"], "SUCCESS")
        self.assertEqual((await self.message("room", a, candidate(1)))["result"], "SUCCESS")

        joined = (await self.join("room"))["params"]
        b = joined["client_id"]
        self.assertEqual(joined["is_initiator"], "false")
        self.assertEqual([json.loads(m) for m in joined["messages"]], [OFFER, candidate(1)])
        ws_b = await self.registered("room", b)

        ws_b.send({"cmd": "send", "msg": json.dumps(ANSWER)})
        self.assertEqual(await ws_a.next(), {"msg": json.dumps(ANSWER), "error": ""})
        ws_b.send({"cmd": "send", "msg": json.dumps(candidate(2))})
        self.assertEqual(json.loads((await ws_a.next())["msg"]), candidate(2))

        self.assertEqual(await self.message("room", a, candidate(3)), {"result": "SUCCESS"})
        self.assertEqual(json.loads((await ws_b.next())["msg"]), candidate(3))

        # A hangs up: leave, bye over the socket, close, DELETE.
        self.assertEqual((await self.post(f"/leave/room/{a}"))[:2][0], 200)
        ws_a.send({"cmd": "send", "msg": json.dumps({"type": "bye"})})
        self.assertEqual(await ws_b.next(), {"msg": '{"type": "bye"}', "error": ""})
        await ws_a.close()
        code, _, body = await http("DELETE", f"{self.url}/collider/room/{a}")
        self.assertEqual((code, body), (200, b"OK\n"))
        # B became initiator; its new offer is stored for the next joiner.
        self.assertEqual(await self.message("room", b, OFFER), {"result": "SUCCESS"})
        third = (await self.join("room"))["params"]
        self.assertEqual((third["is_initiator"], third["messages"]), ("false", [json.dumps(OFFER)]))

    @async_test
    async def test_early_forward_queued_until_register(self) -> None:
        """An initiator message forwarded before the peer registered is queued and delivered on register."""
        a = (await self.join("room"))["params"]["client_id"]
        b = (await self.join("room"))["params"]["client_id"]
        await self.registered("room", a)
        await self.message("room", a, candidate(7))
        ws_b = await self.registered("room", b)
        self.assertEqual(json.loads((await ws_b.next())["msg"]), candidate(7))

    @async_test
    async def test_post_fallback(self) -> None:
        """The non-initiator's POST fallback to wss_post_url reaches the initiator's socket."""
        a = (await self.join("room"))["params"]["client_id"]
        b = (await self.join("room"))["params"]["client_id"]
        ws_a = await self.registered("room", a)
        code, headers, body = await http("POST", f"{self.url}/collider/room/{b}", json.dumps(ANSWER).encode())
        self.assertEqual((code, body), (200, b"OK\n"))
        self.assertEqual(headers.getRawHeaders(b"access-control-allow-origin"), [b"*"])
        self.assertEqual(json.loads((await ws_a.next())["msg"]), ANSWER)

    @async_test
    async def test_hijack_attempt(self) -> None:
        """Registering a client id the room server did not issue for that room gets an error and the socket closes."""
        a = (await self.join("room"))["params"]["client_id"]
        await self.join("other")
        for room, client in (("other", a), ("room", "12345678")):
            ws = await self.ws()
            ws.send({"cmd": "register", "roomid": room, "clientid": client})
            self.assertEqual(await ws.next(), {"msg": "", "error": Errors.NOT_ISSUED})
            self.assertEqual(await ws.wait_closed(), 1000)
        ws = await self.registered("room", a)
        thief = await self.ws()
        thief.send({"cmd": "register", "roomid": "room", "clientid": a})
        self.assertEqual(await thief.next(), {"msg": "", "error": Errors.DUPLICATED_REGISTRATION})
        await thief.wait_closed()

    @async_test
    async def test_ghost_room(self) -> None:
        """A socket that drops without /leave frees the room after the grace period (apprtc #251 does not happen)."""
        a = (await self.join("room"))["params"]["client_id"]
        b = (await self.join("room"))["params"]["client_id"]
        await self.registered("room", a)
        ws_b = await self.registered("room", b)
        unbound = self.unbound("room", b)
        ws_b.drop()
        await ws_b.wait_closed()
        await unbound
        self.assertEqual((await self.join("room"))["result"], "FULL")
        self.clock.advance(9.9)
        self.assertEqual((await self.join("room"))["result"], "FULL")
        self.clock.advance(0.1)
        _, _, page = await http("GET", self.url + "/r/room")
        self.assertNotIn(b"room is full", page)
        joined = await self.join("room")
        self.assertEqual((joined["result"], joined["params"]["is_initiator"]), ("SUCCESS", "false"))

    @async_test
    async def test_reregister_after_drop(self) -> None:
        """A client whose socket dropped re-registers within the grace period and gets what was queued meanwhile."""
        a = (await self.join("room"))["params"]["client_id"]
        b = (await self.join("room"))["params"]["client_id"]
        await self.registered("room", a)
        ws_b = await self.registered("room", b)
        unbound = self.unbound("room", b)
        await ws_b.close()
        await unbound
        await self.message("room", a, candidate(4))
        self.clock.advance(9)
        ws_b2 = await self.registered("room", b)
        self.assertEqual(json.loads((await ws_b2.next())["msg"]), candidate(4))
        self.clock.advance(5)
        self.assertTrue(self.app.hub.rooms.is_member("room", b))

    @async_test
    async def test_register_timeout(self) -> None:
        """A client that joins and never registers is removed after register_timeout_seconds."""
        await self.join("room")
        self.clock.advance(10)
        self.assertIsNone(self.app.hub.storage.get_room("room"))

    @async_test
    async def test_collider_errors_on_the_wire(self) -> None:
        """Collider's error texts arrive as envelopes; unknown cmd keeps the socket, the others close it with 1000."""
        ws = await self.ws()
        ws.send({"cmd": "hello"})
        self.assertEqual(await ws.next(), {"msg": "", "error": Errors.UNEXPECTED_CMD})
        ws.send({"cmd": "send", "msg": "x"})
        self.assertEqual(await ws.next(), {"msg": "", "error": Errors.NOT_REGISTERED})
        self.assertEqual(await ws.wait_closed(), 1000)
        cases = [
            ([{"cmd": "register", "roomid": "r"}], Errors.INVALID_REGISTER),
            (["not json"], None),
            ([{"cmd": "register", "roomid": "r", "clientid": "a/b"}], Errors.BAD_ID),
        ]
        for frames, text in cases:
            ws = await self.ws()
            for f in frames:
                ws.send(f)
            envelope = await ws.next()
            if text is None:
                self.assertTrue(envelope["error"].startswith(Errors.JSON_PREFIX))
            else:
                self.assertEqual(envelope, {"msg": "", "error": text})
            await ws.wait_closed()
        a = (await self.join("room"))["params"]["client_id"]
        ws = await self.registered("room", a)
        ws.send({"cmd": "register", "roomid": "room", "clientid": a})
        self.assertEqual(await ws.next(), {"msg": "", "error": Errors.DUPLICATED_REGISTER_REQUEST})
        await ws.wait_closed()
        ws = await self.registered("room2", (await self.join("room2"))["params"]["client_id"])
        ws.send({"cmd": "send"})
        self.assertEqual(await ws.next(), {"msg": "", "error": Errors.INVALID_SEND})
        status = await http_json("GET", self.url + "/collider/status")
        self.assertEqual(status["wserrors"], 7)

    @async_test
    async def test_collider_http_errors(self) -> None:
        """collider's HTTP API: empty body, bad path and refused sends are 500 text; other methods an empty 200."""
        code, headers, body = await http("POST", f"{self.url}/collider/room/abc", b"")
        self.assertEqual((code, body), (500, b"Empty request body\n"))
        self.assertEqual(headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
        code, _, body = await http("POST", f"{self.url}/collider/room/abc/x", b"m")
        self.assertEqual((code, body), (500, b"Invalid path: /room/abc/x\n"))
        code, _, body = await http("POST", f"{self.url}/collider/room/abc", b"m")
        self.assertEqual((code, body), (500, f"Failed to send the message: {Errors.NOT_IN_ROOM}\n".encode()))
        code, headers, body = await http("OPTIONS", f"{self.url}/collider/room/abc")
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(headers.getRawHeaders(b"access-control-allow-methods"), [b"POST, DELETE"])
        code, _, body = await http("DELETE", f"{self.url}/collider/nope/abc")
        self.assertEqual((code, body), (200, b"OK\n"))
        status = await http_json("GET", f"{self.url}/collider/status")
        self.assertEqual(status["httperrors"], 3)

    @async_test
    async def test_status(self) -> None:
        """/status counts open and total registered sockets and reports uptime as a number."""
        a = (await self.join("room"))["params"]["client_id"]
        await self.registered("room", a)
        self.clock.advance(2.5)
        code, headers, body = await http("GET", self.url + "/collider/status")
        self.assertTrue(body.endswith(b"\n"))
        status = json.loads(body)
        self.assertEqual(status, {"upsec": 2.5, "openws": 1, "totalws": 1, "wserrors": 0, "httperrors": 0})
        self.assertEqual(headers.getRawHeaders(b"access-control-allow-methods"), [b"GET"])

    @async_test
    async def test_origin(self) -> None:
        """A foreign Origin is refused with 403; our own and localhost are accepted."""
        with self.assertRaises(ConnectionError):
            await self.ws(origin="https://evil.example")
        await self.ws(origin=f"http://127.0.0.1:{self.port}")
        await self.ws(origin="http://localhost:9999")


class ColliderSiteTests(WebCase, unittest.TestCase):
    """The collider-exact site, with the room server off (a plain collider)."""

    def setUp(self) -> None:
        self.start_web(make_config(rooms={"enabled": "no"}, signaling={"listen": "127.0.0.1:0", "max_queued_messages": "3"}))

    async def collider(self, method: str, path: str, body: bytes | None = None):
        return await http(method, f"http://127.0.0.1:{self.collider_port}{path}", body)

    @async_test
    async def test_exact_paths(self) -> None:
        """/ws, /status and /<room>/<client> work at collider's own paths; a POST-made client's messages reach the registering one."""
        code, _, body = await self.collider("POST", "/room/a", b"m1")
        self.assertEqual((code, body), (200, b"OK\n"))
        ws_b = await self.ws(port=self.collider_port)
        ws_b.send({"cmd": "register", "roomid": "room", "clientid": "b"})
        self.assertEqual(await ws_b.next(), {"msg": "m1", "error": ""})
        ws_a = await self.ws(port=self.collider_port)
        ws_a.send({"cmd": "register", "roomid": "room", "clientid": "a"})
        ws_b.send({"cmd": "send", "msg": "<&>"})
        self.assertEqual(await ws_a.next_raw(), '{"msg":"\\u003c\\u0026\\u003e","error":""}\n')
        ws_c = await self.ws(port=self.collider_port)
        ws_c.send({"cmd": "register", "roomid": "room", "clientid": "c"})
        self.assertEqual(await ws_c.next(), {"msg": "", "error": Errors.ROOM_FULL})
        code, _, body = await self.collider("POST", "/room/c", b"x")
        self.assertEqual((code, body), (500, f"Failed to send the message: {Errors.ROOM_FULL}\n".encode()))
        status = json.loads((await self.collider("GET", "/status"))[2])
        self.assertEqual((status["openws"], status["totalws"]), (2, 2))
        self.assertEqual((await self.collider("GET", "/"))[0], 500)

    @async_test
    async def test_queue_limit_over_http(self) -> None:
        """The message past max_queued_messages gets collider's queue error as a 500."""
        for i in range(3):
            self.assertEqual((await self.collider("POST", "/room/a", b"m"))[0], 200)
        code, _, body = await self.collider("POST", "/room/a", b"m")
        self.assertEqual((code, body), (500, f"Failed to send the message: {Errors.QUEUE_FULL}\n".encode()))

    @async_test
    async def test_delete_closes_socket(self) -> None:
        """DELETE removes a registered client and closes its socket."""
        ws = await self.ws(port=self.collider_port)
        await self.register(ws, "room", "a")
        self.assertEqual((await self.collider("DELETE", "/room/a"))[2], b"OK\n")
        self.assertEqual(await ws.wait_closed(), 1000)
        self.assertIsNone(self.app.hub.peer("room", "a"))

    @async_test
    async def test_main_site_has_no_rooms(self) -> None:
        """With [rooms] disabled the main site serves signaling but no room routes."""
        self.assertEqual((await http("POST", f"{self.url}/join/room"))[0], 404)
        await self.ws()


class LimitTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(signaling={"max_connections_per_ip": "2", "max_message_bytes": "256",
                                              "messages_per_second": "3", "message_burst": "3"}))

    @async_test
    async def test_connections_per_ip(self) -> None:
        """A third WebSocket from one address is refused; closing one makes room again."""
        first = await self.ws()
        await self.ws()
        with self.assertRaises(ConnectionError):
            await self.ws()
        self.assertEqual(self.app.signaling_factory.refused_per_address, 1)  # counted for the metric
        freed = self.sockets_closed(below=2)
        await first.close()
        await freed.wait(5)
        await self.ws()

    @async_test
    async def test_message_size_and_rate(self) -> None:
        """An oversized frame gets the size error and closes; a burst past the rate gets the rate error."""
        ws = await self.ws()
        ws.send({"cmd": "x" * 300})
        self.assertEqual(await ws.next(), {"msg": "", "error": Errors.too_large(256)})
        await ws.wait_closed()
        ws = await self.ws()
        for _ in range(4):
            ws.send({"cmd": "nope"})
        errors = [(await ws.next())["error"] for _ in range(4)]
        self.assertEqual(errors[-1], Errors.too_fast(3))


class PingTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(signaling={"ping_interval_seconds": "1"}))

    @async_test
    async def test_idle_pings(self) -> None:
        """An idle socket gets WebSocket pings at ping_interval_seconds."""
        ws = await self.ws()
        await ws.pinged.addTimeout(5, reactor)
        self.assertGreaterEqual(ws.pings, 1)


class StopTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web()

    @async_test
    async def test_stop_closes_every_socket(self) -> None:
        """Stopping the web app closes registered and unregistered sockets and leaves no timer."""
        a = (await self.join("room"))["params"]["client_id"]
        registered = await self.registered("room", a)
        idle = await self.ws()
        self.app.stop()
        self.assertEqual(await registered.wait_closed(), 1000)
        self.assertEqual(await idle.wait_closed(), 1000)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FrameSizeTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(signaling={"max_message_bytes": "200000"}))

    @async_test
    async def test_every_header_length_arrives_whole(self) -> None:
        """Forwarded frames with 7-bit, 16-bit and 64-bit payload lengths (RFC 6455 §5.2) reach the peer intact."""
        a = (await self.join("sizes"))["params"]["client_id"]
        ws_a = await self.registered("sizes", a)
        b = (await self.join("sizes"))["params"]["client_id"]
        ws_b = await self.registered("sizes", b)
        # The envelope adds ~25 bytes: 60 stays under 126, 1,000 needs 16 bits, 70,000 needs 64.
        for size in (60, 1000, 65535 - 25, 70000):
            text = "x" * size
            ws_a.send({"cmd": "send", "msg": text})
            self.assertEqual(await ws_b.next(), {"msg": text, "error": ""})
        ws_b.send({"cmd": "send", "msg": "back"})
        self.assertEqual(await ws_a.next(), {"msg": "back", "error": ""})

    @async_test
    async def test_compression_offer_declined_and_call_works(self) -> None:
        """A client offering permessage-deflate, as every browser does, gets a plain socket that works."""
        from autobahn.websocket.compress import PerMessageDeflateOffer

        from tests.signaling.wsclient import ws_connect

        a = (await self.join("deflate"))["params"]["client_id"]
        ws_a = await self.registered("deflate", a)
        b = (await self.join("deflate"))["params"]["client_id"]
        ws_b = await ws_connect(self.port, perMessageCompressionOffers=[PerMessageDeflateOffer()])
        self._clients.append(ws_b)
        await self.register(ws_b, "deflate", b)
        ws_b.send({"cmd": "send", "msg": "hello"})
        self.assertEqual(await ws_a.next(), {"msg": "hello", "error": ""})
        ws_a.send({"cmd": "send", "msg": "back"})
        self.assertEqual(await ws_b.next(), {"msg": "back", "error": ""})
