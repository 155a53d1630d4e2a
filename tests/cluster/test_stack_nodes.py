"""Stack processes (``twistd``) with ``[redis] url``: start without Redis, become ready when it comes, see each other."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

from twisted.trial import unittest

from tests.support import TWISTD, RedisServer, StackProcess, free_port


def get(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def node_config(redis_url: str, http: int, metrics: int, node_id: str = "") -> str:
    return ("[turn]\nenabled = no\n"
            f"[http]\nlisten = 127.0.0.1:{http}\n"
            f"[redis]\nurl = {redis_url}\nkey_prefix = t:\nnode_id = {node_id}\nlease_seconds = 4\nrenew_seconds = 1\n"
            f"[metrics]\nlisten = 127.0.0.1:{metrics}\n")


class StackNodeTests(unittest.TestCase):
    timeout = 90

    def start_node(self, redis: RedisServer, node_id: str = "") -> tuple[StackProcess, int, int]:
        http, metrics = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
        return StackProcess(self, node_config(redis.url, http, metrics, node_id)), http, metrics

    def test_starts_without_redis_then_serves(self) -> None:
        """Redis absent at start: the stack starts, logs the back-off, /healthz says not ready (503) and /join answers ERROR; once Redis runs, it is ready and joins succeed."""
        redis = RedisServer(self, start=False)
        stack, http, metrics = self.start_node(redis, "n1")
        stack.lines.wait(r"redis: cannot reach redis://127\.0\.0\.1:\d+/0 for the commands connection .*retrying in 0\.1 s", 10)
        code, body = get(f"http://127.0.0.1:{metrics}/healthz")
        self.assertEqual(code, 503)
        self.assertIn(b"not ready: redis unavailable", body)
        code, body = get(f"http://127.0.0.1:{http}/join/room", "POST")
        self.assertEqual(json.loads(body)["result"], "ERROR")
        self.assertIn("unavailable", json.loads(body)["error"])
        redis.start()
        stack.lines.wait(r"cluster: node n1 holds its lease", 15)
        code, body = get(f"http://127.0.0.1:{metrics}/healthz")
        self.assertEqual((code, body), (200, b"ok\n"))
        code, body = get(f"http://127.0.0.1:{http}/join/room", "POST")
        self.assertEqual(json.loads(body)["result"], "SUCCESS")
        self.assertNotIn("Traceback", stack.lines.text(500))

    def test_systemd_status_follows_redis(self) -> None:
        """Under systemd: READY=1 says "not ready: redis unavailable" while Redis is away; STATUS= says ready once it comes, and not ready again when it goes."""
        notify_path = f"/tmp/wrs-cluster-{os.getpid()}-{id(self)}.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        self.addCleanup(os.unlink, notify_path)
        self.addCleanup(notify.close)

        def next_status(timeout: float = 20) -> str:
            deadline = time.monotonic() + timeout
            while True:
                notify.settimeout(max(0.01, deadline - time.monotonic()))
                message = notify.recv(4096).decode()  # raises TimeoutError at the deadline
                for line in message.splitlines():
                    if line.startswith("STATUS="):
                        return line[len("STATUS="):]

        redis = RedisServer(self, start=False)
        http, metrics = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
        StackProcess(self, node_config(redis.url, http, metrics, "sd"), env={"NOTIFY_SOCKET": notify_path})
        self.assertRegex(next_status(), r"^serving \d+ listeners; not ready: redis unavailable")
        redis.start()
        self.assertRegex(next_status(), r"^serving \d+ listeners; cluster node sd ready$")
        redis.kill()
        self.assertRegex(next_status(), r"^serving \d+ listeners; not ready: redis unavailable")

    def test_two_nodes_in_status(self) -> None:
        """Two stacks on one Redis each list both nodes in /status, with lease and public URL."""
        redis = RedisServer(self)
        a, _, metrics_a = self.start_node(redis, "node-a")
        leases = redis.keyspace_events("t:node:node-a", "t:node:node-b")
        self.addCleanup(leases.close)
        self.start_node(redis, "node-b")
        leases.next("t:node:node-b", "set")  # b holds its lease ...
        leases.next("t:node:node-a", "set")  # ... a renewed after that (its reply lists both) ...
        leases.next("t:node:node-a", "set")  # ... and renewed again, so it has read that reply  # a renewed after b's lease existed: its view has both
        status = json.loads(get(f"http://127.0.0.1:{metrics_a}/status")[1])
        self.assertEqual({n["node_id"] for n in status["cluster"]["nodes"]}, {"node-a", "node-b"})
        self.assertTrue(status["cluster"]["ready"])
        self.assertEqual(status["cluster"]["node_id"], "node-a")
        node_b = [n for n in status["cluster"]["nodes"] if n["node_id"] == "node-b"][0]
        self.assertTrue(0 < node_b["lease_left_s"] <= 4, node_b)
        self.assertEqual(node_b["websockets"], 0)
        metrics = get(f"http://127.0.0.1:{metrics_a}/metrics")[1].decode()
        for line in ("webrtcstack_cluster_nodes 2.0", 'webrtcstack_redis_up{connection="commands"} 1.0',
                     'webrtcstack_redis_up{connection="inbox"} 1.0', "webrtcstack_cluster_ready 1.0"):
            self.assertIn(line, metrics)
        from tests.ops.test_cli import run

        code, out, _ = run("status", "--url", f"http://127.0.0.1:{metrics_a}/status")
        self.assertEqual(code, 0)
        self.assertIn("cluster: node node-a (ready)", out)
        self.assertIn("2 live node(s)", out)
        self.assertRegex(out, r"node-b: lease \d\.\ds left, 0 websockets")

    def test_duplicate_node_id_exits(self) -> None:
        """A second process with a live node's id logs why and exits non-zero; the first keeps serving."""
        redis = RedisServer(self)
        first, _, metrics = self.start_node(redis, "same")
        http, metrics2 = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(node_config(redis.url, http, metrics2, "same"))
        proc = subprocess.run(TWISTD + ["-n", "--pidfile=", "--logfile=-", "webrtcstack", "-c", path],
                              capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("[redis] node_id 'same' is held by another live node", proc.stdout + proc.stderr)
        self.assertEqual(get(f"http://127.0.0.1:{metrics}/healthz"), (200, b"ok\n"))


class RedisTlsTests(unittest.TestCase):
    timeout = 90

    def tls_redis(self) -> tuple[RedisServer, int, str]:
        from tests.ops.support import make_cert

        cert, key, _ = make_cert(self, ("localhost", "127.0.0.1"))
        tls_port = free_port(socket.SOCK_STREAM)
        redis = RedisServer(self, extra=("--tls-port", str(tls_port), "--tls-cert-file", cert, "--tls-key-file", key,
                                         "--tls-auth-clients", "no"))
        return redis, tls_port, cert

    def tls_node(self, tls_port: int, ca_file: str, node_id: str) -> tuple[StackProcess, int]:
        http, metrics = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
        text = node_config(f"rediss://localhost:{tls_port}/0", http, metrics, node_id)
        text = text.replace("renew_seconds = 1\n", f"renew_seconds = 1\nca_file = {ca_file}\n")
        return StackProcess(self, text), metrics

    def test_rediss_with_private_ca(self) -> None:
        """rediss:// to a redis-server with TLS, trusting its CA through [redis] ca_file: the node holds its lease and is ready; the traffic is TLS (Redis lists the connections on its TLS port)."""
        redis, tls_port, cert = self.tls_redis()
        stack, metrics = self.tls_node(tls_port, cert, "tls-node")
        stack.lines.wait(r"cluster: node tls-node holds its lease", 15)
        self.assertEqual(get(f"http://127.0.0.1:{metrics}/healthz"), (200, b"ok\n"))
        clients = redis.clients("tls-node")
        self.assertEqual(len(clients), 2, clients)  # commands and inbox
        self.assertTrue(all(c["laddr"].endswith(f":{tls_port}") for c in clients), clients)

    def test_rediss_with_wrong_ca_is_not_ready(self) -> None:
        """A Redis certificate the configured CA did not sign: the node never talks to it, logs why, and stays not ready; no traceback."""
        from tests.ops.support import make_cert

        _redis, tls_port, _cert = self.tls_redis()
        other, _, _ = make_cert(self, ("localhost",))
        stack, metrics = self.tls_node(tls_port, other, "tls-wrong")
        stack.lines.wait(r"redis: cannot reach rediss://localhost:\d+/0 for the commands connection .*(certificate|SSL)", 15)
        code, body = get(f"http://127.0.0.1:{metrics}/healthz")
        self.assertEqual(code, 503)
        self.assertIn(b"not ready: redis unavailable", body)
        self.assertNotIn("Traceback", stack.lines.text(500))

    def test_unusable_ca_file_is_a_config_error(self) -> None:
        """A missing ca_file, or one without a PEM certificate, is an error naming [redis] ca_file before anything binds."""
        from webrtcstack.config import ConfigError, parse_config
        from webrtcstack.service import _redis_tls

        not_pem = self.mktemp()
        with open(not_pem, "w") as f:
            f.write("hello\n")
        for path, words in (("/nonexistent/ca.pem", "cannot read it"), (not_pem, "holds no PEM certificate")):
            config = parse_config(f"[turn]\nenabled = no\n[redis]\nurl = rediss://localhost:1/0\nca_file = {path}\n", "n.ini")
            with self.assertRaises(ConfigError) as ctx:
                _redis_tls(config, "localhost")
            self.assertEqual((ctx.exception.section, ctx.exception.key), ("redis", "ca_file"))
            self.assertIn(words, str(ctx.exception))
