"""What one client can make the stack hold, measured from the stack's own process (``VmHWM``, its peak RSS).

Each test runs the stack as a separate process, does what the attack in
issue 9 did, and reads the process's peak resident memory before and after:
the growth must stay far under what the attack offered.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import urllib.request

from twisted.trial import unittest

from tests.integration.test_public_limits import masked_text_frame
from tests.support import StackProcess, free_port

MIB = 1 << 20


class MemoryBoundsTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.port = free_port(socket.SOCK_STREAM)
        self.metrics_port = free_port(socket.SOCK_STREAM)
        self.stack = StackProcess(self, "[turn]\nenabled = no\n"
                                        f"[http]\nlisten = 127.0.0.1:{self.port}\nwrites_per_second_per_ip = 100000\n"
                                        "[signaling]\nmessages_per_second = 100000\nmessage_burst = 100000\n"
                                        "ping_interval_seconds = 0\n"
                                        f"[metrics]\nlisten = 127.0.0.1:{self.metrics_port}\n")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def join(self, room: str) -> str:
        code, body = self.request("POST", f"/join/{room}")
        self.assertEqual(code, 200, body)
        return str(json.loads(body)["params"]["client_id"])

    def peak(self) -> int:
        """The stack's peak resident memory so far, in bytes."""
        return self.stack.status("VmHWM") * 1024

    def socket(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(sock.close)
        return sock

    def stream_body(self, head: bytes, chunk: bytes, total: int) -> tuple[bytes, int]:
        """Send ``head`` then ``chunk`` until ``total`` bytes or the server closes; the answer and the bytes sent."""
        sock = self.socket()
        sock.sendall(head)
        sent = 0
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while not answer.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        return answer, sent

    def test_100_mb_bodies(self) -> None:
        """A 100 MB body, declared in Content-Length and sent chunked, gets 413; the stack's peak memory grows by under 16 MiB (it was ~990 MB for 300 MB)."""
        client = self.join("room")
        before = self.peak()
        answer, _ = self.stream_body(f"POST /message/room/{client} HTTP/1.1\r\nHost: x\r\n"
                                     "Content-Length: 100000000\r\n\r\n".encode(), b"x" * MIB, 100 * MIB)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413"), answer[:200])
        chunk = b"100000\r\n" + b"y" * MIB + b"\r\n"
        answer, _ = self.stream_body(f"POST /message/room/{client} HTTP/1.1\r\nHost: x\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n".encode(), chunk, 100 * MIB)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413"), answer[:200])
        self.assertLess(self.peak() - before, 16 * MIB)

    def test_1024_collider_posts_of_64_kb(self) -> None:
        """1024 collider POSTs of 65,000 bytes (63 MB) for a peer that never registers: at most max_queued_bytes (1 MiB) is kept; peak memory grows by under 16 MiB."""
        client = self.join("room")
        self.join("room")
        before = self.peak()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.addCleanup(conn.close)
        codes: dict[int, int] = {}
        for _ in range(1024):
            conn.request("POST", f"/collider/room/{client}", b"m" * 65000)
            response = conn.getresponse()
            response.read()
            codes[response.status] = codes.get(response.status, 0) + 1
        self.assertEqual(codes, {200: 16, 500: 1008})  # 16 x 65,000 bytes fit in 1 MiB
        self.assertLess(self.peak() - before, 16 * MIB)

    def test_peer_that_never_reads(self) -> None:
        """A room peer that never reads while the other sends 24 MB: it is closed once 1 MiB waits unread; peak memory grows by under 16 MiB."""
        a, b = self.join("room"), self.join("room")
        sockets = []
        for client in (a, b):
            sock = self.socket()
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: Upgrade\r\n"
                         f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
            sock.sendall(masked_text_frame(json.dumps({"cmd": "register", "roomid": "room", "clientid": client}).encode()))
            sockets.append(sock)
        slow, sender = sockets
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read from it
        before = self.peak()
        frame = masked_text_frame(json.dumps({"cmd": "send", "msg": "s" * 60000}).encode())
        for _ in range(400):
            sender.sendall(frame)
        # The slow peer is closed (4009, then dropped when it does not answer
        # the close): its socket ends, with a reset as data was still unsent.
        slow.settimeout(20)
        try:
            while slow.recv(MIB):
                pass
        except ConnectionResetError:
            pass
        self.assertLess(self.peak() - before, 16 * MIB)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            self.assertIn("webrtcstack_websocket_slow_readers_closed_total 1.0", r.read().decode())
