"""One call split over three stack processes sharing one Redis, with no sticky routing.

join on A, the socket on B, /message on C, /leave on A: the call works as on
one process.  Concurrent joins through two nodes keep capacity and the
single initiator.
"""

from __future__ import annotations

import json
import socket

from twisted.internet import defer, threads
from twisted.trial import unittest

from tests.signaling.wsclient import async_test, http, http_json, ws_connect
from tests.support import RedisServer, StackProcess, free_port


def node_config(redis_url: str, http_port: int, node_id: str) -> str:
    return ("[turn]\nenabled = no\n[rooms]\ncapacity = 3\n"
            f"[http]\nlisten = 127.0.0.1:{http_port}\nwrites_per_second_per_ip = 10000\n"
            "[signaling]\nping_interval_seconds = 0\n"
            f"[redis]\nurl = {redis_url}\nkey_prefix = t:\nnode_id = {node_id}\nlease_seconds = 4\nrenew_seconds = 1\n"
            "[metrics]\nenabled = no\n")


class SplitCallTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.redis = RedisServer(self)
        self.urls: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        self.stacks: dict[str, StackProcess] = {}
        for name in ("a", "b", "c"):
            port = free_port(socket.SOCK_STREAM)
            self.stacks[name] = StackProcess(self, node_config(self.redis.url, port, f"node-{name}"))
            self.stacks[name].lines.wait(rf"cluster: node node-{name} holds its lease", 15)
            self.ports[name], self.urls[name] = port, f"http://127.0.0.1:{port}"

    async def ws(self, node: str, room: str, client: str) -> object:
        ws = await ws_connect(self.ports[node])
        self.addCleanup(ws.close)
        ws.send({"cmd": "register", "roomid": room, "clientid": client})
        return ws

    @async_test
    async def test_apprtc_flow_across_nodes(self) -> None:
        """Stored offer crosses nodes in /join; socket messages and POSTed messages reach the peer's node; a third join is FULL anywhere; after /leave the room admits a new joiner."""
        first = await http_json("POST", self.urls["a"] + "/join/room")
        self.assertEqual((first["result"], first["params"]["is_initiator"]), ("SUCCESS", "true"))
        c1 = first["params"]["client_id"]
        offer = json.dumps({"type": "offer", "sdp": "v=0"})
        stored = await http_json("POST", f"{self.urls['c']}/message/room/{c1}", offer.encode())
        self.assertEqual(stored, {"result": "SUCCESS"})
        second = await http_json("POST", self.urls["b"] + "/join/room")
        self.assertEqual((second["result"], second["params"]["is_initiator"]), ("SUCCESS", "false"))
        self.assertEqual(second["params"]["messages"], [offer])
        c2 = second["params"]["client_id"]
        for node in ("a", "b", "c"):
            full = await http_json("POST", self.urls[node] + "/join/room")
            self.assertEqual(full["result"], "FULL", node)

        ws1 = await self.ws("b", "room", c1)
        ws2 = await self.ws("c", "room", c2)
        answer = json.dumps({"type": "answer", "sdp": "v=0"})
        ws2.send({"cmd": "send", "msg": answer})  # type: ignore[attr-defined]
        self.assertEqual(await ws1.next(10), {"msg": answer, "error": ""})  # type: ignore[attr-defined]
        candidate = json.dumps({"type": "candidate", "candidate": "c"})
        forwarded = await http_json("POST", f"{self.urls['a']}/message/room/{c1}", candidate.encode())
        self.assertEqual(forwarded, {"result": "SUCCESS"})
        self.assertEqual(await ws2.next(10), {"msg": candidate, "error": ""})  # type: ignore[attr-defined]
        code, _, body = await http("POST", f"{self.urls['a']}/collider/room/{c1}", b"collider post")
        self.assertEqual((code, body), (200, b"OK\n"))
        self.assertEqual(await ws2.next(10), {"msg": "collider post", "error": ""})  # type: ignore[attr-defined]

        code, _, _ = await http("POST", f"{self.urls['a']}/leave/room/{c2}")
        self.assertEqual(code, 200)
        await ws2.close()  # type: ignore[attr-defined]
        again = await http_json("POST", self.urls["c"] + "/join/room")
        self.assertEqual(again["result"], "SUCCESS")

    @async_test
    async def test_queued_before_register_crosses_nodes(self) -> None:
        """A message sent before the peer registers is queued in the shared record and handed over when it registers on another node."""
        c1 = (await http_json("POST", self.urls["a"] + "/join/q"))["params"]["client_id"]
        c2 = (await http_json("POST", self.urls["a"] + "/join/q"))["params"]["client_id"]
        changes = self.redis.keyspace_events("t:room:q")
        self.addCleanup(changes.close)
        ws1 = await self.ws("b", "q", c1)
        ws1.send({"cmd": "send", "msg": "early"})  # type: ignore[attr-defined]
        # The socket's message and the POST below take different paths: wait until the first is queued.
        while b'"early"' not in self.redis.command("GET", "t:room:q"):
            await threads.deferToThread(changes.next, "t:room:q", "set")  # off the reactor: it must send meanwhile
        code, _, _ = await http("POST", f"{self.urls['c']}/message/q/{c1}", b"also early")
        self.assertEqual(code, 200)
        ws2 = await self.ws("c", "q", c2)
        got = [(await ws2.next(10))["msg"] for _ in range(2)]  # type: ignore[attr-defined]
        self.assertEqual(got, ["early", "also early"])

    @async_test
    async def test_concurrent_joins(self) -> None:
        """30 rooms, four joins each at once through two nodes: two SUCCESS (one initiator) and two FULL in every room."""
        rooms = [f"race{i}" for i in range(30)]
        joins = [http_json("POST", f"{self.urls['a' if j % 2 else 'b']}/join/{room}") for room in rooms for j in range(4)]
        answers = await defer.gatherResults([defer.ensureDeferred(j) for j in joins])
        for i, room in enumerate(rooms):
            mine = answers[4 * i:4 * i + 4]
            results = sorted(a["result"] for a in mine)
            self.assertEqual(results, ["FULL", "FULL", "SUCCESS", "SUCCESS"], room)
            initiators = [a["params"]["is_initiator"] for a in mine if a["result"] == "SUCCESS"]
            self.assertEqual(sorted(initiators), ["false", "true"], room)

    @async_test
    async def test_group_call_across_nodes(self) -> None:
        """A group room with its three members on three nodes: members lists, joined, addressed messages stamped
        with from, an inbox filled while a member is away and handed over on another node, and left."""
        ids = []
        for node in ("a", "b", "c"):
            answer = await http_json("POST", self.urls[node] + "/join/g3?mesh=1")
            self.assertEqual((answer["result"], answer["params"]["mesh"], answer["params"]["members"]),
                             ("SUCCESS", "true", ids), node)
            ids.append(answer["params"]["client_id"])
        self.assertEqual((await http_json("POST", self.urls["a"] + "/join/g3?mesh=1"))["result"], "FULL")
        sockets = {}
        for node, cid in zip(("a", "b", "c"), ids):
            sockets[cid] = await self.ws(node, "g3", cid)
            members = await sockets[cid].next(10)  # type: ignore[attr-defined]
            self.assertEqual(json.loads(members["msg"]), {"type": "members", "ids": [i for i in ids if i != cid]})
        a, b, c = ids
        for cid in (a, b):  # c's register told the others, across nodes
            events = [json.loads((await sockets[cid].next(10))["msg"]) for _ in range(2 if cid == a else 1)]  # type: ignore[attr-defined]
            self.assertIn({"type": "joined", "id": c}, events)
        sockets[a].send({"cmd": "send", "msg": "to c only", "to": c, "from": b})  # type: ignore[attr-defined]
        self.assertEqual(await sockets[c].next(10), {"msg": "to c only", "error": "", "from": a})  # type: ignore[attr-defined]
        changes = self.redis.keyspace_events("t:room:g3")
        self.addCleanup(changes.close)
        await sockets[c].close()  # type: ignore[attr-defined]

        def c_socket() -> object:
            peers = json.loads(self.redis.command("GET", "t:room:g3").split(b"|", 1)[1])["peers"]
            return next(p[1] for p in peers if p[0] == c)

        # A message can only wait for c once the room's record says c's socket is gone (until then it is in
        # flight to the old socket, as on any network): wait for that write.
        while c_socket() is not None:
            await threads.deferToThread(changes.next, "t:room:g3", "set")
        sockets[b].send({"cmd": "send", "msg": "while c is away", "to": c})  # type: ignore[attr-defined]
        sockets[b].send({"cmd": "send", "msg": "marker", "to": a})  # type: ignore[attr-defined]
        self.assertEqual((await sockets[a].next(10))["msg"], "marker")  # type: ignore[attr-defined]  # b's sends are done
        back = await self.ws("a", "g3", c)  # c comes back on another node
        self.assertEqual(json.loads((await back.next(10))["msg"])["type"], "members")  # type: ignore[attr-defined]
        self.assertEqual(await back.next(10), {"msg": "while c is away", "error": "", "from": b})  # type: ignore[attr-defined]
        code, _, _ = await http("POST", f"{self.urls['b']}/leave/g3/{b}")
        self.assertEqual(code, 200)
        for cid, ws in ((a, sockets[a]), (c, back)):
            self.assertEqual(json.loads((await ws.next(10))["msg"]), {"type": "left", "id": b}, cid)  # type: ignore[attr-defined]
