"""The whole stack as a service: it binds what the config says and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.support import TWISTD, Lines, free_port, recv_within
from webrtcstack.config import parse_config
from webrtcstack.service import build_service, effective_auth_secrets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binding_request() -> tuple[bytes, bytes]:
    """A minimal RFC 8489 Binding request and its transaction id."""
    tid = os.urandom(12)
    return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + tid, tid


def bound_ports(top) -> list[tuple[str, object]]:  # type: ignore[no-untyped-def]
    """(``"udp"``/``"tcp"``, address) of every listening port under a service tree."""
    found = []
    for child in top:
        port = getattr(child, "port", None)
        if port is not None and hasattr(port, "getHost"):
            host = port.getHost()
            found.append((host.type.lower(), host))
        if hasattr(child, "__iter__"):
            found.extend(bound_ports(child))
    return found


class StackServiceTests(unittest.TestCase):
    def make_config(self, extra: str = ""):  # type: ignore[no-untyped-def]
        return parse_config(
            "[turn]\nlisten = 127.0.0.1:0 [::1]:0\nallow_loopback_peers = yes\n" + extra
            + "[http]\nlisten = 127.0.0.1:0\n[metrics]\nlisten = 127.0.0.1:0\n",
            "test.ini",
        )

    @defer.inlineCallbacks
    def test_start_answers_stun_then_stop_closes_every_port(self) -> None:
        """A started stack answers STUN over UDP on v4 and v6; stopping it closes every port and leaves no timer."""
        top = build_service(self.make_config(), reactor)
        top.startService()
        try:
            bound = bound_ports(top)
            udp = [h for kind, h in bound if kind == "udp"]
            tcp = [h for kind, h in bound if kind == "tcp"]
            self.assertEqual(sorted(h.host for h in udp), ["127.0.0.1", "::1"])
            self.assertEqual(len(tcp), 4)  # TURN v4 + v6, HTTP, metrics
            for host in udp:
                family = socket.AF_INET6 if ":" in host.host else socket.AF_INET
                client = socket.socket(family, socket.SOCK_DGRAM)
                self.addCleanup(client.close)
                client.setblocking(False)
                request, tid = binding_request()
                client.sendto(request, (host.host, host.port))
                reply, _ = yield recv_within(client, 5)
                self.assertEqual(reply[:2], b"\x01\x01", f"no Binding success from {host}")
                self.assertEqual(reply[8:20], tid)
        finally:
            yield top.stopService()
        for kind, host in bound:
            family = socket.AF_INET6 if ":" in host.host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as s:
                if kind == "tcp":
                    self.assertNotEqual(s.connect_ex((host.host, host.port)), 0, f"{host} still accepts")
                else:
                    s.bind((host.host, host.port))  # free again
        # Only trial's own timeout for this test may still be pending.
        pending = [c for c in reactor.getDelayedCalls() if "onTimeout" not in getattr(c.func, "__qualname__", "")]
        self.assertEqual(pending, [])

    def test_generated_secret_when_none_configured(self) -> None:
        """With no static_auth_secret a random one is made at start; configured ones are used as given."""
        a = effective_auth_secrets(self.make_config())
        b = effective_auth_secrets(self.make_config())
        self.assertEqual(len(a), 1)
        self.assertGreaterEqual(len(a[0]), 32)
        self.assertNotEqual(a, b)
        given = self.make_config("static_auth_secret = one-secret-1 two-secret-2\n")
        self.assertEqual(effective_auth_secrets(given), ("one-secret-1", "two-secret-2"))


class ProcessSetupTests(unittest.TestCase):
    def test_start_up_objects_are_frozen_once_the_reactor_runs(self) -> None:
        """Starting the stack schedules gc.freeze for when the reactor runs, after every service is built."""
        import gc

        from webrtcstack.service import ProcessSetupService

        calls: list[object] = []

        class FakeReactor:
            def callWhenRunning(self, f, *args):  # type: ignore[no-untyped-def]
                calls.append(f)

        ProcessSetupService(parse_config(""), FakeReactor()).startService()
        self.assertEqual(calls, [gc.freeze])


class TwistdProcessTests(unittest.TestCase):
    def test_twistd_serves_stun_and_exits_cleanly_on_sigterm(self) -> None:
        """`twistd -n webrtcstack -c FILE` answers STUN on UDP and TCP, then SIGTERM shuts it down cleanly and frees the ports."""
        port = 0
        # One port for both: find one free for UDP and TCP alike.
        for _ in range(50):
            port = free_port(socket.SOCK_DGRAM)
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    break
        http_port = free_port(socket.SOCK_STREAM)
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(f"[turn]\nlisten = 127.0.0.1:{port}\n[http]\nlisten = 127.0.0.1:{http_port}\n[metrics]\nenabled = no\n")
        proc = subprocess.Popen(TWISTD + ["-n", "--pidfile=", "--logfile=-", "webrtcstack", "-c", path],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=os.path.dirname(path))
        assert proc.stdout is not None
        lines = Lines(proc.stdout)
        try:
            lines.wait(r"webrtcstack ready: ", 60)  # it has bound its ports
            request, tid = binding_request()
            reply = b""
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.settimeout(10)
                c.sendto(request, ("127.0.0.1", port))
                reply = c.recv(2048)
            self.assertEqual(reply[8:20], tid, "no STUN answer over UDP")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                request, tid = binding_request()
                c.sendall(request)
                data = b""
                deadline = time.monotonic() + 5
                while len(data) < 20 and time.monotonic() < deadline:
                    data += c.recv(2048)
                self.assertEqual(data[8:20], tid, "no STUN answer over TCP")
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            lines.close()
        output = "\n".join(lines.seen).encode()
        # twistd ends a SIGTERM'd run by re-raising the signal once it has shut down cleanly,
        # so the status is "killed by SIGTERM" (systemd counts that as a clean stop).
        self.assertIn(proc.returncode, (0, -signal.SIGTERM), output.decode(errors="replace"))
        self.assertIn(b"Server Shut Down.", output)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))
