"""The sessions admin API and ``webrtcstack sessions`` / ``webrtcstack end`` against a real stack.

A TURN client (our codec, a real UDP socket) allocates and sends to a peer;
a room gets two members over the room API.  The admin API must refuse
calls without the token from the state directory, list both kinds of
session with their figures, end each, and log every call.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request

from twisted.trial import unittest

from tests.cluster.test_turn_nodes import UDP, BlockingTurnClient, error
from tests.ops.test_cli import run
from tests.support import StackProcess, free_port
from tests.turn import msgs
from webrtcstack.stun.constants import AttrType, MessageClass, Method


def call(url: str, method: str = "GET", token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class AdminTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.turn, self.http, self.metrics = free_port(socket.SOCK_DGRAM), free_port(), free_port()
        self.state = os.path.abspath(self.mktemp())
        self.stack = StackProcess(self, f"""\
[stack]
state_dir = {self.state}
[turn]
listen = 127.0.0.1:{self.turn}
realm = cluster.test
users = alice:alice-password
allow_loopback_peers = yes
relay_ip = 127.0.0.1
relay_ports = {40000 + self.turn % 20000}-{40000 + self.turn % 20000 + 50}
[http]
listen = 127.0.0.1:{self.http}
[metrics]
listen = 127.0.0.1:{self.metrics}
""")
        self.base = f"http://127.0.0.1:{self.metrics}/admin"
        with open(os.path.join(self.state, "admin-token")) as f:
            self.token = f.read().strip()

    def test_token_is_required_and_kept_private(self) -> None:
        """No token or a wrong one gets 401 (and a log line); the token file is 0600."""
        self.assertEqual(os.stat(os.path.join(self.state, "admin-token")).st_mode & 0o777, 0o600)
        self.assertEqual(call(self.base + "/sessions")[0], 401)
        self.assertEqual(call(self.base + "/sessions", token="wrong")[0], 401)
        self.assertEqual(call(self.base + "/sessions/a1", "DELETE", token=self.token[:-1])[0], 401)
        self.stack.lines.wait(r"admin: refused GET /admin/sessions from 127\.0\.0\.1: no token", 10, rescan=True)
        self.stack.lines.wait(r"admin: refused DELETE /admin/sessions/a1 from 127\.0\.0\.1: bad token", 10, rescan=True)
        self.assertEqual(call(self.base + "/sessions", token=self.token)[0], 200)

    def test_list_and_end_an_allocation(self) -> None:
        """An allocation is listed with user, addresses, peers and bytes; `webrtcstack end` removes it (Refresh then gets 437)."""
        client = BlockingTurnClient(self.turn)
        self.addCleanup(client.close)
        reply = client.request(Method.ALLOCATE, UDP)
        self.assertIsNone(error(reply))
        relayed = msgs.parse_xor_address(reply.get(AttrType.XOR_RELAYED_ADDRESS), reply.transaction_id)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(peer.close)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(5)
        tid = os.urandom(12)
        self.assertIsNone(error(client.request(Method.CREATE_PERMISSION,
                                               [(AttrType.XOR_PEER_ADDRESS, msgs.xor_address("127.0.0.1", 9, tid))])))
        tid = os.urandom(12)
        client.sock.send(msgs.encode(Method.SEND, MessageClass.INDICATION, tid, [
            (AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*peer.getsockname(), tid)), (AttrType.DATA, b"x" * 100)]))
        self.assertEqual(peer.recv(2048), b"x" * 100)

        code, out, err = run("sessions", "-c", self.stack.path, "--json")
        self.assertEqual(code, 0, err)
        (allocation,) = json.loads(out)["allocations"]
        self.assertEqual(allocation["user"], "alice")
        self.assertEqual(allocation["client"], "127.0.0.1:%d" % client.sock.getsockname()[1])
        self.assertEqual(allocation["relayed"], ["%s:%d" % relayed])
        self.assertEqual(allocation["peers"], ["127.0.0.1"])
        self.assertEqual(allocation["bytes_to_peer"], 100)
        code, out, _ = run("sessions", "-c", self.stack.path)
        self.assertIn(f"{allocation['id']}  alice", out)

        code, out, err = run("end", allocation["id"], "-c", self.stack.path)
        self.assertEqual((code, out.strip()), (0, f"ended {allocation['id']}"), err)
        self.assertEqual(error(client.request(Method.REFRESH, [])), 437)
        self.assertEqual(json.loads(run("sessions", "-c", self.stack.path, "--json")[1])["allocations"], [])
        self.stack.lines.wait(rf"admin: 127\.0\.0\.1 ended allocation {allocation['id']} \(user alice", 10, rescan=True)
        code, _, err = run("end", "a999", "-c", self.stack.path)
        self.assertEqual(code, 1)
        self.assertIn("no allocation a999", err)

    def test_list_and_end_room_members(self) -> None:
        """Room members are listed; ending one takes it out of the room, ending the room takes the rest."""
        joined = []
        for _ in range(2):
            request = urllib.request.Request(f"http://127.0.0.1:{self.http}/join/adminroom", data=b"", method="POST")
            with urllib.request.urlopen(request, timeout=10) as r:
                joined.append(json.loads(r.read())["params"]["client_id"])
        code, answer = call(self.base + "/sessions", token=self.token)
        (room,) = answer["rooms"]
        self.assertEqual((room["room"], [m["client"] for m in room["members"]]), ("adminroom", joined))
        self.assertEqual([m["socket"] for m in room["members"]], [False, False])

        code, out, err = run("end", f"room/adminroom/{joined[0]}", "-c", self.stack.path)
        self.assertEqual((code, out.strip()), (0, f"ended room/adminroom/{joined[0]}"), err)
        (room,) = call(self.base + "/sessions", token=self.token)[1]["rooms"]
        self.assertEqual([m["client"] for m in room["members"]], [joined[1]])
        self.assertEqual(run("end", "room/adminroom", "-c", self.stack.path)[0], 0)
        self.assertEqual(call(self.base + "/sessions", token=self.token)[1]["rooms"], [])
        self.stack.lines.wait(rf"admin: 127\.0\.0\.1 ended room/adminroom/{joined[1]}", 10, rescan=True)
        self.assertEqual(call(self.base + "/sessions/room/adminroom", "DELETE", token=self.token)[0], 404)
