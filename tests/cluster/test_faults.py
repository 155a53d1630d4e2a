"""Faults across nodes: a node killed, a node paused past its lease, Redis killed and restarted.

Processes are killed and paused by PID only.
"""

from __future__ import annotations

import json
import signal
import socket
import time

from twisted.trial import unittest

from tests.signaling.wsclient import async_test, http_json, ws_connect
from tests.support import RedisServer, StackProcess, free_port

LEASE_S = 4
BYE = {"msg": json.dumps({"type": "bye"}), "error": ""}


def node_config(redis_url: str, http_port: int, node_id: str) -> str:
    return ("[turn]\nenabled = no\n"
            f"[http]\nlisten = 127.0.0.1:{http_port}\n"
            "[signaling]\nping_interval_seconds = 0\n"
            f"[redis]\nurl = {redis_url}\nkey_prefix = t:\nnode_id = {node_id}\nlease_seconds = {LEASE_S}\n"
            "renew_seconds = 1\n[stack]\ndrain_seconds = 1\n[metrics]\nenabled = no\n")


class FaultTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.redis = RedisServer(self)
        self.stacks: dict[str, StackProcess] = {}
        self.ports: dict[str, int] = {}
        for name in ("a", "b"):
            port = free_port(socket.SOCK_STREAM)
            self.stacks[name] = StackProcess(self, node_config(self.redis.url, port, f"node-{name}"))
            self.stacks[name].lines.wait(rf"cluster: node node-{name} holds its lease", 15)
            self.ports[name] = port

    def record(self, room: str) -> dict:  # type: ignore[type-arg]
        """The room's shared record as stored (``<version>|<json>``), parsed."""
        return json.loads(self.redis.command("GET", f"t:room:{room}").split(b"|", 1)[1])

    def url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.ports[node]}"

    async def call(self, room: str) -> tuple[str, object, str, object]:
        """A two-person call: the first client's socket on node a, the second's on node b."""
        c1 = (await http_json("POST", self.url("a") + f"/join/{room}"))["params"]["client_id"]
        c2 = (await http_json("POST", self.url("b") + f"/join/{room}"))["params"]["client_id"]
        ws1, ws2 = await ws_connect(self.ports["a"]), await ws_connect(self.ports["b"])
        self.addCleanup(ws1.close)
        self.addCleanup(ws2.close)
        ws1.send({"cmd": "register", "roomid": room, "clientid": c1})
        ws2.send({"cmd": "register", "roomid": room, "clientid": c2})
        ws1.send({"cmd": "send", "msg": "hello"})
        self.assertEqual((await ws2.next(10))["msg"], "hello")  # both registered, across nodes
        return c1, ws1, c2, ws2

    @async_test
    async def test_killed_node_is_reaped(self) -> None:
        """SIGKILL node a: within 15 s the peer on b gets a bye, the room admits a new joiner, and the dead node's keys are gone."""
        c1, ws1, c2, ws2 = await self.call("room")
        started = time.monotonic()
        self.stacks["a"].signal(signal.SIGKILL)
        self.assertEqual(await ws2.next(15), BYE)  # type: ignore[attr-defined]
        self.assertLess(time.monotonic() - started, 15)
        joined = await http_json("POST", self.url("b") + "/join/room")
        self.assertEqual(joined["result"], "SUCCESS")
        self.stacks["b"].lines.wait(r"cluster: node node-a stopped renewing its lease; its clients left 1 room", 10,
                                    rescan=True)
        self.assertEqual(self.redis.command("EXISTS", "t:node:node-a", "t:node:node-a:rooms", "t:inbox:node-a"), 0)
        self.assertIsNone(self.redis.command("ZSCORE", "t:nodes", "node-a"))

    @async_test
    async def test_clean_stop_leaves_nothing_behind(self) -> None:
        """SIGTERM node a: after its drain it takes its socket out of the room's record, gives its lease back and deletes its inbox and room set."""
        c1, ws1, c2, ws2 = await self.call("room")
        self.stacks["a"].signal(signal.SIGTERM)
        self.assertIn(self.stacks["a"].proc.wait(20), (0, -signal.SIGTERM))  # twistd exits by the signal it got
        self.assertEqual(self.redis.command("EXISTS", "t:node:node-a", "t:node:node-a:rooms", "t:inbox:node-a"), 0)
        record = self.record("room")
        peer = [p for p in record["peers"] if p[0] == c1][0]
        self.assertIsNone(peer[1])  # no socket token of the stopped node is left in the record

    @async_test
    async def test_paused_node_fences_itself(self) -> None:
        """SIGSTOP node a past its lease: b reaps it (bye to the peer); after SIGCONT node a closes the reaped client's socket instead of resurrecting it, and serves again under a new incarnation."""
        c1, ws1, c2, ws2 = await self.call("room")
        self.stacks["a"].signal(signal.SIGSTOP)
        self.addCleanup(self.stacks["a"].signal, signal.SIGCONT)
        self.assertEqual(await ws2.next(15), BYE)  # type: ignore[attr-defined]
        self.stacks["a"].signal(signal.SIGCONT)
        await ws1.wait_closed(15)  # type: ignore[attr-defined]
        self.stacks["a"].lines.wait(r"could not renew its lease for over 4 s; .* new incarnation", 10, rescan=True)
        self.stacks["a"].lines.wait(r"cluster: node node-a holds its lease", 10)
        record = self.record("room")
        self.assertNotIn(c1, [p[0] for p in record["peers"]])
        joined = await http_json("POST", self.url("a") + "/join/room")
        self.assertEqual(joined["result"], "SUCCESS")

    @async_test
    async def test_redis_restart(self) -> None:
        """Redis SIGKILLed and restarted empty on its port: both nodes come back by themselves, joins succeed within 5 s of its return, and the calls in progress go on (each node puts its own sockets back into their rooms)."""
        c1, ws1, c2, ws2 = await self.call("across")
        l1 = (await http_json("POST", self.url("a") + "/join/local"))["params"]["client_id"]
        l2 = (await http_json("POST", self.url("a") + "/join/local"))["params"]["client_id"]
        local1, local2 = await ws_connect(self.ports["a"]), await ws_connect(self.ports["a"])
        self.addCleanup(local1.close)
        self.addCleanup(local2.close)
        local1.send({"cmd": "register", "roomid": "local", "clientid": l1})
        local2.send({"cmd": "register", "roomid": "local", "clientid": l2})
        local1.send({"cmd": "send", "msg": "before"})
        self.assertEqual((await local2.next(10))["msg"], "before")
        self.redis.kill()
        for name in ("a", "b"):
            self.stacks[name].lines.wait(r"redis: the commands connection to .* was lost", 10, rescan=True)
        self.redis.start()
        back = time.monotonic()
        for name in ("a", "b"):
            self.stacks[name].lines.wait(r"redis: commands connection to .* is up", 5)
            self.stacks[name].lines.wait(r"redis: inbox connection to .* is up", 5, rescan=True)
            answer = await http_json("POST", self.url(name) + f"/join/after-{name}")
            self.assertEqual(answer["result"], "SUCCESS", answer)
        self.assertLess(time.monotonic() - back, 5)
        for name in ("a", "b"):
            self.stacks[name].lines.wait(r"cluster: re-wrote \d+ room\(s\) from this node's sockets", 10, rescan=True)
        local1.send({"cmd": "send", "msg": "after"})
        self.assertEqual(await local2.next(10), {"msg": "after", "error": ""})
        # the call across nodes too: node a put c1 back, node b put c2 back
        ws1.send({"cmd": "send", "msg": "across after"})  # type: ignore[attr-defined]
        self.assertEqual(await ws2.next(10), {"msg": "across after", "error": ""})  # type: ignore[attr-defined]
