"""twistd under a fake systemd: READY=1 once bound, SIGHUP reloads (bad configs rejected), SIGTERM drains."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

from twisted.trial import unittest

from tests.ops.support import make_cert
from tests.support import TWISTD, free_port



class TwistdUnderSystemdTests(unittest.TestCase):
    def setUp(self) -> None:
        self.notify_path = f"/tmp/wrs-ops-{os.getpid()}-{id(self)}.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.addCleanup(os.unlink, self.notify_path)
        self.addCleanup(self.notify.close)
        self.cert, self.key, _ = make_cert(self)
        self.metrics_port = free_port(socket.SOCK_STREAM)
        self.https_port = free_port(socket.SOCK_STREAM)
        self.path = os.path.abspath(self.mktemp())
        self.config_text = (
            "[stack]\ndrain_seconds = 5\nlog_format = json\n[turn]\nenabled = no\n"
            f"[http]\nlisten =\ntls_listen = 127.0.0.1:{self.https_port}\n"
            f"[tls]\ncertificate = {self.cert}\nprivate_key = {self.key}\n"
            f"[metrics]\nlisten = 127.0.0.1:{self.metrics_port}\n")
        self.write(self.config_text)

    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text)

    def messages(self, until: str, timeout: float = 20) -> list[str]:
        """Notify messages received until one starts with ``until``."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                break
            got.append(message)
            if message.startswith(until):
                return got
        raise AssertionError(f"no {until} from the process; got {got}")

    def status(self) -> dict:  # type: ignore[type-arg]
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/status", timeout=5) as r:
            return json.loads(r.read())

    def test_notify_reload_and_drain(self) -> None:
        """READY=1 comes once ports are bound; a bad SIGHUP is rejected, a good one applied; SIGTERM sends STOPPING=1 and exits."""
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, WATCHDOG_USEC="1000000")
        proc = subprocess.Popen(TWISTD + ["-n", "--pidfile=", "--logfile=-", "webrtcstack", "-c", self.path],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                cwd=os.path.dirname(self.path))
        try:
            ready = self.messages("READY=1")
            self.assertIn(f"MAINPID={proc.pid}", ready[-1])
            with socket.create_connection(("127.0.0.1", self.https_port), timeout=5):
                pass  # bound before READY=1
            self.assertIn("WATCHDOG=1", self.messages("WATCHDOG=1", timeout=3))
            self.assertEqual(self.status()["state"], "running")

            self.write(self.config_text.replace("drain_seconds = 5", "drain_seconds = soon"))
            proc.send_signal(signal.SIGHUP)
            self.messages("READY=1")
            status = self.status()
            self.assertEqual(status["last_reload"]["result"], "rejected")
            self.assertIn("drain_seconds", status["last_reload"]["reason"])

            self.write(self.config_text.replace("drain_seconds = 5", "drain_seconds = 4")
                       .replace(f"127.0.0.1:{self.https_port}", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"))
            proc.send_signal(signal.SIGHUP)
            self.messages("READY=1")
            status = self.status()
            self.assertEqual(status["last_reload"]["result"], "ok")
            self.assertEqual(status["last_reload"]["applied"], ["[stack] drain_seconds"])
            self.assertEqual(status["last_reload"]["needs_restart"], ["[http] tls_listen"])

            proc.send_signal(signal.SIGTERM)
            self.assertTrue(self.messages("STOPPING=1")[-1].startswith("STOPPING=1"))
            output, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        # twistd re-raises the signal that stopped it, as systemd expects.
        self.assertIn(proc.returncode, (0, -signal.SIGTERM))
        lines = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
        messages = [record["message"] for record in lines]
        self.assertTrue(any("reload rejected" in m and "drain_seconds" in m for m in messages), messages)
        self.assertTrue(any("[http] tls_listen" in m and "restart" in m for m in messages), messages)
        self.assertTrue(any(m.startswith("draining") for m in messages), messages)
