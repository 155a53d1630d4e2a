"""10,000 messages from a socket on one node to a socket on another while the Redis connections are killed twice."""

from __future__ import annotations

import socket
import urllib.request

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.signaling.wsclient import async_test, http_json, ws_connect
from tests.support import RedisServer, StackProcess, free_port

MESSAGES = 10000


def node_config(redis_url: str, http_port: int, node_id: str, metrics_port: int) -> str:
    return ("[turn]\nenabled = no\n"
            f"[http]\nlisten = 127.0.0.1:{http_port}\n"
            "[signaling]\nping_interval_seconds = 0\nmessages_per_second = 100000\nmessage_burst = 100000\n"
            f"[metrics]\nlisten = 127.0.0.1:{metrics_port}\n"
            f"[redis]\nurl = {redis_url}\nkey_prefix = t:\nnode_id = {node_id}\nlease_seconds = 10\n"
            "renew_seconds = 1\n")


class NoLossTests(unittest.TestCase):
    timeout = 180

    @async_test
    async def test_no_loss_across_connection_kills(self) -> None:
        """Sent in order from node a, received on node b: all 10,000, none twice, in order, no error to the sender, though every Redis connection of both nodes is killed twice meanwhile."""
        redis = RedisServer(self)
        ports = {}
        self.metrics = {}
        for name in ("a", "b"):
            ports[name], self.metrics[name] = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
            stack = StackProcess(self, node_config(redis.url, ports[name], f"node-{name}", self.metrics[name]))
            stack.lines.wait(rf"cluster: node node-{name} holds its lease", 15)
        c1 = (await http_json("POST", f"http://127.0.0.1:{ports['a']}/join/room"))["params"]["client_id"]
        c2 = (await http_json("POST", f"http://127.0.0.1:{ports['b']}/join/room"))["params"]["client_id"]
        sender, receiver = await ws_connect(ports["a"]), await ws_connect(ports["b"])
        self.addCleanup(sender.close)
        self.addCleanup(receiver.close)
        receiver.send({"cmd": "register", "roomid": "room", "clientid": c2})
        sender.send({"cmd": "register", "roomid": "room", "clientid": c1})
        sender.send({"cmd": "send", "msg": "ready"})
        self.assertEqual((await receiver.next(10))["msg"], "ready")
        kills = 0
        got: list[int] = []
        for i in range(MESSAGES):
            sender.send({"cmd": "send", "msg": str(i)})
            if i in (MESSAGES // 3, 2 * MESSAGES // 3):
                kills += redis.kill_clients("webrtcstack:node-")  # commands and inbox connections of both nodes
            if i % 500 == 499:  # read as we go, so nothing waits unread in the buffers
                while len(got) < i + 1 - 400:
                    got.append(int((await receiver.next(30))["msg"]))
        while len(got) < MESSAGES:
            got.append(int((await receiver.next(30))["msg"]))
        self.assertEqual(kills, 8)  # two connections per node, two nodes, twice
        self.assertEqual(got, list(range(MESSAGES)))
        self.assertEqual(sender.queue.pending, [])  # no error came back to the sender
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics['a']}/metrics", timeout=10).read().decode()
        fast = [float(line.split()[-1]) for line in metrics.splitlines()
                if line.startswith("webrtcstack_cluster_fast_sends_total")]
        self.assertGreater(fast[0], MESSAGES * 0.9)  # nearly all took one round trip on the cached record


def counter(metrics_port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))


class CachedRecordTests(unittest.TestCase):
    timeout = 60

    @async_test
    async def test_first_message_after_another_nodes_change_takes_one_round_trip(self) -> None:
        """When node b changes the room (its client registers), the record travels with b's invalidation: node a's next message runs on it (a one-round-trip send), not under the lock."""
        redis = RedisServer(self)
        ports, metrics = {}, {}
        for name in ("a", "b"):
            ports[name], metrics[name] = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
            stack = StackProcess(self, node_config(redis.url, ports[name], f"node-{name}", metrics[name]))
            stack.lines.wait(rf"cluster: node node-{name} holds its lease", 15)
        c1 = (await http_json("POST", f"http://127.0.0.1:{ports['a']}/join/room"))["params"]["client_id"]
        c2 = (await http_json("POST", f"http://127.0.0.1:{ports['b']}/join/room"))["params"]["client_id"]
        on_a, on_b = await ws_connect(ports["a"]), await ws_connect(ports["b"])
        self.addCleanup(on_a.close)
        self.addCleanup(on_b.close)
        record = redis.keyspace_events("t:room:room")
        self.addCleanup(record.close)
        changed_on_a = counter(metrics["a"], "webrtcstack_cluster_room_changes_total")  # the joins' changes
        on_a.send({"cmd": "register", "roomid": "room", "clientid": c1})
        await deferToThread(record.next, "t:room:room", "set")  # a's change is written (a caches the record) ...
        # ... and done on a: an invalidation that reached a while its own change still held the room's
        # lock would rightly not be cached (the next message loads the record), which is not this test.
        for _ in range(500):  # bounded: 10 s
            if counter(metrics["a"], "webrtcstack_cluster_room_changes_total") > changed_on_a:
                break
            await deferLater(reactor, 0.02, lambda: None)
        else:
            self.fail("node a never counted its change")
        on_b.send({"cmd": "register", "roomid": "room", "clientid": c2})  # ... then b changes the room
        await deferToThread(record.next, "t:room:room", "set")
        # b's message reaches a through a's inbox after b's invalidation, so a has read that too.
        on_b.send({"cmd": "send", "msg": "hello a"})
        self.assertEqual((await on_a.next(10))["msg"], "hello a")
        fast = counter(metrics["a"], "webrtcstack_cluster_fast_sends_total")
        changes = counter(metrics["a"], "webrtcstack_cluster_room_changes_total")
        on_a.send({"cmd": "send", "msg": "hello b"})
        self.assertEqual((await on_b.next(10))["msg"], "hello b")
        # a counts its send when Redis answers the send script, which can be after b has delivered the
        # message (the script wrote b's inbox first): wait for the count (bounded), not for the delivery.
        for _ in range(500):  # bounded: 10 s
            if counter(metrics["a"], "webrtcstack_cluster_fast_sends_total") > fast:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(counter(metrics["a"], "webrtcstack_cluster_fast_sends_total"), fast + 1)
        self.assertEqual(counter(metrics["a"], "webrtcstack_cluster_room_changes_total"), changes)
