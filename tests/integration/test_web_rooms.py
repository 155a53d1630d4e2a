"""The room server over real HTTP on 127.0.0.1: every route and result code."""

from __future__ import annotations

import json
import re

from twisted.trial import unittest

from tests.signaling.webcase import SECRET, WebCase, make_config
from tests.signaling.wsclient import async_test, http, http_json
from webrtcstack.rooms.credentials import rest_credentials


def loading_params(html: bytes) -> dict:
    m = re.search(rb"window\.loadingParams = (.*?);</script>", html)
    assert m is not None, html[:500]
    return json.loads(m.group(1))


class RoomRouteTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web()

    @async_test
    async def test_landing_page(self) -> None:
        """GET / serves the page with no room, so it shows the room selection."""
        code, headers, body = await http("GET", self.url + "/")
        self.assertEqual(code, 200)
        self.assertIn(b"text/html", headers.getRawHeaders(b"content-type")[0])
        self.assertEqual(loading_params(body)["roomId"], "")
        self.assertIn(b'<script src="/js/call.js"></script>', body)

    @async_test
    async def test_room_page(self) -> None:
        """GET /r/<room> carries the room id, link and our signaling URLs in loadingParams."""
        code, _, body = await http("GET", self.url + "/r/room_1-A?it=relay")
        self.assertEqual(code, 200)
        p = loading_params(body)
        self.assertEqual((p["roomId"], p["roomLink"]), ("room_1-A", f"{self.url}/r/room_1-A?it=relay"))
        self.assertEqual(p["peerConnectionConfig"]["iceTransports"], "relay")
        self.assertEqual(p["wssUrl"], f"ws://127.0.0.1:{self.port}/ws")
        self.assertEqual(p["wssPostUrl"], f"{self.url}/collider")
        self.assertEqual(p["iceServerRequestUrl"], f"{self.url}/v1alpha/iceconfig?key=")
        self.assertIs(p["bypassJoinConfirmation"], False)

    @async_test
    async def test_crafted_link_keeps_our_servers(self) -> None:
        """GET /r/<room>?wshpp=evil…&ts=evil…: the page served still names only our own signaling and ICE servers."""
        _, _, body = await http("GET", self.url + "/r/room?wshpp=evil.example:443&ts=https://evil.example/ice")
        p = loading_params(body)
        self.assertEqual((p["wssUrl"], p["wssPostUrl"], p["iceServerRequestUrl"]),
                         (f"ws://127.0.0.1:{self.port}/ws", f"{self.url}/collider", f"{self.url}/v1alpha/iceconfig?key="))
        self.assertNotIn("evil.example", json.dumps({k: v for k, v in p.items() if k != "roomLink"}).replace("warningMessages", ""))

    @async_test
    async def test_page_escapes_script(self) -> None:
        """Query values cannot break out of the page's script element."""
        _, _, body = await http("GET", self.url + "/r/room?x=%3C/script%3E%3Cscript%3Ealert(1)")
        self.assertNotIn(b"</script><script>alert", body)
        self.assertIn("</script><script>alert(1)", loading_params(body)["roomLink"].replace("&lt;", "<").replace("&gt;", ">"))

    @async_test
    async def test_full_page(self) -> None:
        """GET /r/<room> of a full room serves the room-is-full page with 200."""
        await self.join("room")
        await self.join("room")
        code, _, body = await http("GET", self.url + "/r/room")
        self.assertEqual(code, 200)
        self.assertIn(b"Sorry, this room is full.", body)

    @async_test
    async def test_join_shapes(self) -> None:
        """Joins give SUCCESS with string booleans and double-encoded params, then FULL with apprtc's shape."""
        first = await self.join("room", "?hd=true")
        self.assertEqual(first["result"], "SUCCESS")
        p = first["params"]
        self.assertEqual((p["is_initiator"], p["messages"], p["room_id"]), ("true", [], "room"))
        self.assertRegex(p["client_id"], r"^\d{8}$")
        self.assertEqual(json.loads(p["media_constraints"])["video"]["mandatory"], {"minWidth": "1280", "minHeight": "720"})
        for key in ("pc_config", "pc_constraints", "offer_options", "is_loopback", "bypass_join_confirmation", "version_info"):
            self.assertIsInstance(p[key], str)
        await self.message("room", p["client_id"], {"sdp": "v=0\r\n", "type": "offer"})
        second = await self.join("room")
        self.assertEqual((second["params"]["is_initiator"], second["params"]["messages"]),
                         ("false", ['{"sdp": "v=0\\r\\n", "type": "offer"}']))
        self.assertEqual(await self.join("room"), {"result": "FULL", "params": {"messages": []}})

    @async_test
    async def test_join_duplicate_client(self) -> None:
        """A join whose new id is already in the room gets DUPLICATE_CLIENT."""
        assert self.app.hub.rooms is not None
        self.app.hub.rooms._make_client_id = lambda: "11111111"
        await self.join("room")
        self.assertEqual(await self.join("room"), {"result": "DUPLICATE_CLIENT", "params": {"messages": []}})

    @async_test
    async def test_message_results(self) -> None:
        """/message answers SUCCESS, UNKNOWN_ROOM, UNKNOWN_CLIENT, and ERROR for a body that is not UTF-8."""
        cid = (await self.join("room"))["params"]["client_id"]
        self.assertEqual(await self.message("room", cid, {"type": "candidate", "label": 0, "id": "0", "candidate": "candidate:1"}), {"result": "SUCCESS"})
        self.assertEqual(await self.message("nope", cid, {}), {"result": "UNKNOWN_ROOM"})
        self.assertEqual(await self.message("room", "99999999", {}), {"result": "UNKNOWN_CLIENT"})
        code, _, data = await self.post(f"/message/room/{cid}", b"\xff\xfe")
        self.assertEqual(json.loads(data)["result"], "ERROR")
        stored = self.app.hub.storage.get_room("room").members[cid].messages
        self.assertEqual(stored, ['{"type": "candidate", "label": 0, "id": "0", "candidate": "candidate:1"}'])

    @async_test
    async def test_leave_empty_200(self) -> None:
        """/leave always answers an empty 200, removes the client and deletes an empty room."""
        cid = (await self.join("room"))["params"]["client_id"]
        for path in (f"/leave/room/{cid}", f"/leave/room/{cid}", "/leave/nope/1"):
            code, _, body = await self.post(path)
            self.assertEqual((code, body), (200, b""))
        self.assertIsNone(self.app.hub.storage.get_room("room"))

    @async_test
    async def test_bye_route_is_leave(self) -> None:
        """collider's /bye notice removes the client like /leave."""
        cid = (await self.join("room"))["params"]["client_id"]
        await self.join("room")
        code, _, body = await self.post(f"/bye/room/{cid}")
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(self.app.hub.rooms.occupancy("room"), 1)

    @async_test
    async def test_params(self) -> None:
        """GET /params gives the room-independent parameters with ice_server_url."""
        p = await http_json("GET", self.url + "/params")
        self.assertNotIn("room_id", p)
        self.assertEqual(p["ice_server_url"], f"{self.url}/v1alpha/iceconfig?key=")

    @async_test
    async def test_iceconfig(self) -> None:
        """POST and GET /v1alpha/iceconfig give our TURN/STUN URLs with REST credentials that check against the secret."""
        for method in ("POST", "GET"):
            answer = await http_json(method, self.url + "/v1alpha/iceconfig?key=")
            turn, stun = answer["iceServers"]
            self.assertEqual(turn["urls"], ["turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"])
            self.assertEqual(stun, {"urls": ["stun:127.0.0.1:3478"]})
            expiry, _, name = turn["username"].partition(":")
            self.assertEqual(int(expiry), 1_700_000_000 + 86400)
            self.assertEqual(turn["credential"], rest_credentials(SECRET, name, ttl_s=86400, now=1_700_000_000)[1])

    @async_test
    async def test_not_found_and_method(self) -> None:
        """Ids outside the allowed characters get 404; a known path with the wrong method gets 405."""
        for path in ("/r/a.b", "/r/a%20b", "/join/a$b", "/message/a/b/c", "/r/", "/nope", "/r/" + "x" * 65):
            code, _, _ = await http("POST" if path.startswith(("/join", "/message")) else "GET", self.url + path)
            self.assertEqual(code, 404, path)
        code, headers, _ = await http("GET", self.url + "/join/room")
        self.assertEqual(code, 405)
        self.assertEqual(headers.getRawHeaders(b"allow"), [b"POST"])
        self.assertEqual((await http("POST", self.url + "/params"))[0], 405)

    @async_test
    async def test_static(self) -> None:
        """The page's script, style and icon are served; directories are not listed."""
        for path, kind in (("/js/call.js", b"javascript"), ("/js/loopback.js", b"javascript"), ("/css/call.css", b"text/css"),
                           ("/images/icon.svg", b"svg")):
            code, headers, body = await http("GET", self.url + path)
            self.assertEqual(code, 200, path)
            self.assertIn(kind, headers.getRawHeaders(b"content-type")[0])
        self.assertEqual((await http("GET", self.url + "/js/"))[0], 404)
        self.assertEqual((await http("GET", self.url + "/js/nope.js"))[0], 404)


class RoomLimitTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(rooms={"max_rooms": "1", "max_stored_messages": "1", "max_message_bytes": "256",
                                          "bypass_join_confirmation": "yes", "header_message": "Hello <b>"}))

    @async_test
    async def test_limits(self) -> None:
        """max_rooms gives ERROR on join; max_stored_messages and max_message_bytes give ERROR on /message, each with a reason."""
        cid = (await self.join("one"))["params"]["client_id"]
        answer = await self.join("two")
        self.assertEqual((answer["result"], answer["params"]), ("ERROR", {"messages": []}))
        self.assertIn("too many rooms", answer["error"])
        self.assertEqual((await self.message("one", cid, {"x": 1}))["result"], "SUCCESS")
        self.assertEqual((await self.message("one", cid, {"x": 2}))["result"], "ERROR")
        self.assertEqual((await self.message("one", cid, {"x": "y" * 300}))["result"], "ERROR")

    @async_test
    async def test_config_in_page(self) -> None:
        """bypass_join_confirmation and header_message reach the page."""
        _, _, body = await http("GET", self.url + "/r/abcde")
        p = loading_params(body)
        self.assertIs(p["bypassJoinConfirmation"], True)
        self.assertEqual(p["headerMessage"], "Hello <b>")
        self.assertNotIn(b"Hello <b>", body)


class DrainTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web()

    @async_test
    async def test_join_refused_while_draining(self) -> None:
        """While the service drains a join gets ERROR with a reason, and clients already in a room can still message."""
        cid = (await self.join("room"))["params"]["client_id"]
        self.app.start_draining()
        answer = await self.join("room")
        self.assertEqual((answer["result"], answer["params"]), ("ERROR", {"messages": []}))
        self.assertIn("shutting down", answer["error"])
        self.assertEqual(await self.message("room", cid, {"type": "offer", "sdp": "x"}), {"result": "SUCCESS"})


class ReloadTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web()

    @async_test
    async def test_apply_config(self) -> None:
        """A reload changes limits, page settings and the TURN secret for what comes next, keeping rooms."""
        await self.join("room")
        self.app.apply_config(make_config(rooms={"capacity": "3", "header_message": "maintenance at 5"}), ("new-secret-123",))
        await self.join("room")
        # The new capacity is that of group calls; the running room (apprtc's) stays two-person.
        self.assertEqual((await self.join("room"))["result"], "FULL")
        for _ in range(3):
            answer = await self.join("group", "?mesh=1")
            self.assertEqual((answer["result"], answer["params"]["mesh"]), ("SUCCESS", "true"))
        self.assertEqual(len(answer["params"]["members"]), 2)
        self.assertEqual((await self.join("group", "?mesh=1"))["result"], "FULL")
        _, _, body = await http("GET", self.url + "/r/other")
        self.assertEqual(loading_params(body)["headerMessage"], "maintenance at 5")
        turn = (await http_json("POST", self.url + "/v1alpha/iceconfig"))["iceServers"][0]
        name = turn["username"].partition(":")[2]
        self.assertEqual(turn["credential"], rest_credentials("new-secret-123", name, ttl_s=86400, now=1_700_000_000)[1])
