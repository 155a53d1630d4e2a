"""TURN across real nodes: cluster-wide quotas, 300 Try Alternate, iceconfig order, a reaped node's counts.

Two ``twistd`` stacks with TURN on loopback share one ``redis-server``.  A
small blocking TURN client (our STUN codec, real UDP sockets) allocates on
them.  Each node learns the other's allocations from its lease renewals, so
the test waits for renewals through Redis keyspace events, not for time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

from twisted.trial import unittest

from tests.cluster.test_stack_nodes import get
from tests.support import RedisServer, StackProcess, free_port
from tests.turn import msgs
from webrtcstack.stun.attributes import unpack_address
from webrtcstack.stun.constants import AttrType, Method, MessageClass
from webrtcstack.turn.auth import long_term_key

REALM = "cluster.test"
USER, PASSWORD = "alice", "alice-password"
KEY = long_term_key(USER, REALM, PASSWORD)
UDP = [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))]


class BlockingTurnClient:
    """One UDP 5-tuple to a TURN server; each request waits (bounded) for its answer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.nonce = b""

    def request(self, method: int, attrs: list[tuple[int, bytes]]) -> Any:
        if not self.nonce:
            self.sock.send(msgs.encode(method, MessageClass.REQUEST, os.urandom(12), attrs))
            self.nonce = msgs.decode(self.sock.recv(2048)).get(AttrType.NONCE)
        tid = os.urandom(12)
        signed = attrs + [(AttrType.USERNAME, USER.encode()), (AttrType.REALM, REALM.encode()), (AttrType.NONCE, self.nonce)]
        self.sock.send(msgs.encode(method, MessageClass.REQUEST, tid, signed, key=KEY, fingerprint=True))
        while True:
            data = self.sock.recv(2048)
            reply = msgs.decode(data)
            if reply.transaction_id == tid:
                self.last = data
                return reply

    def close(self) -> None:
        self.sock.close()


def error(reply: Any) -> int | None:
    value = reply.get(AttrType.ERROR_CODE)
    return None if value is None else msgs.parse_error_code(value)


def node_config(redis_url: str, node_id: str, turn: int, relay_low: int, relay_high: int, http: int, metrics: int) -> str:
    return (f"[turn]\nlisten = 127.0.0.1:{turn}\nrelay_ip = 127.0.0.1\nrelay_ports = {relay_low}-{relay_high}\n"
            f"realm = {REALM}\nusers = {USER}:{PASSWORD}\nuser_quota = 2\nstatic_auth_secret = cluster-test-secret\n"
            f"[http]\nlisten = 127.0.0.1:{http}\n"
            f"[redis]\nurl = {redis_url}\nkey_prefix = t:\nnode_id = {node_id}\nlease_seconds = 4\nrenew_seconds = 1\n"
            f"[metrics]\nlisten = 127.0.0.1:{metrics}\n")


class TurnNodesTests(unittest.TestCase):
    timeout = 120

    def start_node(self, redis: RedisServer, node_id: str, relay_ports: int) -> dict[str, Any]:
        turn = free_port(socket.SOCK_DGRAM)
        http, metrics = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
        low = 42000 + (turn % 200) * 40
        stack = StackProcess(self, node_config(redis.url, node_id, turn, low, low + relay_ports - 1, http, metrics))
        return {"stack": stack, "turn": turn, "http": http, "metrics": metrics}

    def client(self, port: int) -> BlockingTurnClient:
        c = BlockingTurnClient(port)
        self.addCleanup(c.close)
        return c

    def test_quotas_alternate_and_ice_across_nodes(self) -> None:
        """user_quota counts both nodes; a node out of ports answers 300 naming the other, whose relay works; iceconfig lists the least loaded node first; a killed node's allocations leave the count once it is reaped."""
        redis = RedisServer(self)
        events = redis.keyspace_events("t:node:a", "t:node:b", "t:node:a:info", "t:node:b:info")
        self.addCleanup(events.close)
        a = self.start_node(redis, "a", relay_ports=1)
        b = self.start_node(redis, "b", relay_ports=8)

        def b_then_a_has_read() -> None:  # a renewed after b's record was written, and has read that reply
            events.next("t:node:b:info", "set")
            events.next("t:node:a", "set")
            events.next("t:node:a", "set")

        def a_then_b_has_read() -> None:
            events.next("t:node:a:info", "set")
            events.next("t:node:b", "set")
            events.next("t:node:b", "set")

        b_then_a_has_read()
        a_then_b_has_read()

        def iceconfig(node: dict[str, Any]) -> list[str]:
            code, body = get(f"http://127.0.0.1:{node['http']}/v1alpha/iceconfig", "POST")
            self.assertEqual(code, 200)
            return [url for server in json.loads(body)["iceServers"] for url in server["urls"] if url.startswith("turn:")]

        url_a, url_b = f"turn:127.0.0.1:{a['turn']}?transport=udp", f"turn:127.0.0.1:{b['turn']}?transport=udp"
        # Equal loads: each node lists itself first, then the other.
        turn_a = iceconfig(a)
        self.assertLess(turn_a.index(url_a), turn_a.index(url_b))
        turn_b = iceconfig(b)
        self.assertLess(turn_b.index(url_b), turn_b.index(url_a))

        # One allocation on a takes its only relay port.
        first = self.client(a["turn"])
        self.assertIsNone(error(first.request(Method.ALLOCATE, UDP)))
        # a, now full, hands out b only.
        a_then_b_has_read()
        b_then_a_has_read()
        self.assertEqual([u for u in iceconfig(a) if f":{a['turn']}" in u], [])
        self.assertIn(url_b, iceconfig(a))

        # The next Allocate on a: 300 Try Alternate naming b (signed); the client follows it.
        moved = self.client(a["turn"])
        reply = moved.request(Method.ALLOCATE, UDP)
        self.assertEqual(error(reply), 300)
        self.assertTrue(msgs.verify(moved.last, KEY))
        alternate = unpack_address(reply.get(AttrType.ALTERNATE_SERVER), None)
        self.assertEqual(alternate, ("127.0.0.1", b["turn"]))
        followed = self.client(alternate[1])
        reply = followed.request(Method.ALLOCATE, UDP)
        self.assertIsNone(error(reply))
        relayed = msgs.parse_xor_address(reply.get(AttrType.XOR_RELAYED_ADDRESS), reply.transaction_id)
        self.assertEqual(relayed[0], "127.0.0.1")

        # alice now holds 2 (one per node) = user_quota: a third Allocate on b gets 486.
        events.next("t:node:b:info", "set")
        a_then_b_has_read()
        third = self.client(b["turn"])
        self.assertEqual(error(third.request(Method.ALLOCATE, UDP)), 486)
        metrics = get(f"http://127.0.0.1:{b['metrics']}/metrics")[1].decode()
        self.assertIn("webrtcstack_cluster_allocations 2.0", metrics)
        status = json.loads(get(f"http://127.0.0.1:{b['metrics']}/status")[1])
        per_node = {n["node_id"]: n["allocations"] for n in status["cluster"]["nodes"]}
        self.assertEqual(per_node, {"a": 1, "b": 1})

        # a dies with its allocation: once its lease lapses and b has renewed, alice may allocate again.
        a["stack"].signal(signal.SIGKILL)
        events.next("t:node:a", "expired", timeout=15)
        events.next("t:node:b", "set")
        events.next("t:node:b", "set")
        self.assertIsNone(error(third.request(Method.ALLOCATE, UDP)))
        metrics = get(f"http://127.0.0.1:{b['metrics']}/metrics")[1].decode()
        self.assertIn("webrtcstack_cluster_allocations 2.0", metrics)  # b's two, a's gone
