"""A port already in use: one clear line and exit status 2 for a required listener, before any port is bound; the metrics listener is optional."""

from __future__ import annotations

import os
import socket
import subprocess

from twisted.trial import unittest

from tests.support import TWISTD, StackProcess, free_port


class PortInUseTests(unittest.TestCase):
    timeout = 60

    def held(self, kind: int) -> int:
        sock = socket.socket(socket.AF_INET, kind)
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        self.addCleanup(sock.close)
        return int(sock.getsockname()[1])

    def run_stack(self, text: str) -> subprocess.CompletedProcess[str]:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run(TWISTD + ["-n", "--pidfile=", "--logfile=-", "webrtcstack", "-c", path],
                              capture_output=True, text=True, timeout=40)

    def test_turn_port_in_use(self) -> None:
        """[turn] listen on a UDP port another process holds (coturn still running): exit 2 with one line naming the port, the key and how to find the holder; no traceback."""
        port = self.held(socket.SOCK_DGRAM)
        proc = self.run_stack(f"[turn]\nlisten = 127.0.0.1:{port}\n[http]\nlisten = 127.0.0.1:{free_port(socket.SOCK_STREAM)}\n"
                              "[metrics]\nenabled = no\n")
        out = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 2, out)
        self.assertIn(f"cannot listen on udp 127.0.0.1:{port} ([turn] listen): Address already in use; another process "
                      f"holds that port (find it with: ss -lupn 'sport = :{port}'", out)
        self.assertNotIn("Traceback", out)
        self.assertNotIn("webrtcstack ready", out)

    def test_http_port_in_use(self) -> None:
        """[http] listen on a TCP port in use: the same, naming [http] listen, and TURN (set up first) never binds."""
        port = self.held(socket.SOCK_STREAM)
        turn = free_port(socket.SOCK_DGRAM)
        proc = self.run_stack(f"[turn]\nlisten = 127.0.0.1:{turn}\n[http]\nlisten = 127.0.0.1:{port}\n[metrics]\nenabled = no\n")
        out = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 2, out)
        self.assertIn(f"cannot listen on tcp 127.0.0.1:{port} ([http] listen): Address already in use", out)
        self.assertNotIn("Traceback", out)
        self.assertNotIn("listening on", out)

    def test_metrics_port_in_use_is_left_out_of_ready(self) -> None:
        """The metrics listener is optional: the stack serves without it, says so, and its ready line does not list it."""
        port = self.held(socket.SOCK_STREAM)
        http = free_port(socket.SOCK_STREAM)
        stack = StackProcess(self, f"[turn]\nenabled = no\n[http]\nlisten = 127.0.0.1:{http}\n[metrics]\nlisten = 127.0.0.1:{port}\n")
        line = stack.lines.wait(r"webrtcstack ready: (.*)", 5, rescan=True).group(1)
        self.assertIn(f"http tcp 127.0.0.1:{http}", line)
        self.assertNotIn("metrics", line)
        stack.lines.wait(rf"metrics cannot listen on tcp 127\.0\.0\.1:{port}: Address already in use; serving without it", 5,
                         rescan=True)
