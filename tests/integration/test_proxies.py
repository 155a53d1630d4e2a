"""Behind a reverse proxy: headers believed from ``[http] trusted_proxies`` only; the access log modes.

A real stack process on loopback.  127.0.0.1 is the trusted proxy and
127.0.0.2 (also loopback on Linux) an ordinary client that sends the same
headers, so each test shows both sides: the per-address limits, the log
and the https check follow the forwarded client only when the peer is
trusted.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket

from twisted.trial import unittest

from tests.support import StackProcess, free_port

PROXY, STRANGER = "127.0.0.1", "127.0.0.2"


def request(port: int, method: str, path: str, source: str, headers: dict[str, str] | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, str]:
    """One request from ``source``; (status, body)."""
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read().decode(errors="replace")


def ws_handshake(port: int, source: str, headers: dict[str, str]) -> tuple[int, socket.socket]:
    """A WebSocket opening handshake on /ws from ``source``; (status, the socket, left open)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    lines = [f"GET /ws HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: Upgrade", "Upgrade: websocket",
             "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1]), sock


def start(case: unittest.TestCase, port: int, extra: str = "") -> StackProcess:
    return StackProcess(case, f"""\
[turn]
enabled = no
[http]
listen = 127.0.0.1:{port}
trusted_proxies = {PROXY}
writes_per_second_per_ip = 1
max_connections_per_ip = 1
{extra}
[signaling]
max_connections_per_ip = 1
[metrics]
enabled = no
""")


class TrustedProxyTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.port = free_port(socket.SOCK_STREAM)
        self.stack = start(self, self.port)

    def test_log_and_https_follow_the_proxy_headers_only_from_the_proxy(self) -> None:
        """The access log shows the forwarded client, and X-Forwarded-Proto https makes wss URLs, only from the proxy."""
        headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
        code, body = request(self.port, "GET", "/params?from=proxy", PROXY, headers)
        self.assertEqual(code, 200, body)
        self.assertTrue(json.loads(body)["wss_url"].startswith("wss://"), body)
        code, body = request(self.port, "GET", "/params?from=stranger", STRANGER,
                             {"X-Forwarded-For": "198.51.100.9", "X-Forwarded-Proto": "https"})
        self.assertTrue(json.loads(body)["wss_url"].startswith("ws://"), body)
        self.stack.lines.wait(r'"203\.0\.113\.7" .*GET /params\?from=proxy', 10, rescan=True)
        self.stack.lines.wait(r'"127\.0\.0\.2" .*GET /params\?from=stranger', 10, rescan=True)
        self.assertNotIn("198.51.100.9", self.stack.lines.text(200))

    def test_forwarded_header_rfc7239(self) -> None:
        """``Forwarded: for="[2001:db8::5]:4711";proto=https`` from the proxy names an IPv6 client."""
        code, body = request(self.port, "GET", "/params?rfc7239", PROXY,
                             {"Forwarded": 'for="[2001:db8::5]:4711";proto=https'})
        self.assertTrue(json.loads(body)["wss_url"].startswith("wss://"), body)
        self.stack.lines.wait(r'"2001:db8::5" .*GET /params\?rfc7239', 10, rescan=True)

    def test_write_rate_counts_the_forwarded_client(self) -> None:
        """One write a second per address: two clients behind the proxy each get theirs; spoofing from elsewhere does not help."""
        self.assertNotEqual(request(self.port, "POST", "/join/ra", PROXY, {"X-Forwarded-For": "203.0.113.1"})[0], 429)
        self.assertNotEqual(request(self.port, "POST", "/join/rb", PROXY, {"X-Forwarded-For": "203.0.113.2"})[0], 429)
        self.assertEqual(request(self.port, "POST", "/join/rc", PROXY, {"X-Forwarded-For": "203.0.113.1"})[0], 429)
        self.assertNotEqual(request(self.port, "POST", "/join/rd", STRANGER, {"X-Forwarded-For": "203.0.113.3"})[0], 429)
        self.assertEqual(request(self.port, "POST", "/join/re", STRANGER, {"X-Forwarded-For": "203.0.113.4"})[0], 429)

    def test_connection_and_websocket_limits_per_forwarded_client(self) -> None:
        """One connection per address: the proxy may hold many; WebSockets count per forwarded client."""
        first = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(PROXY, 0))
        second = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(PROXY, 0))
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        self.assertEqual(request(self.port, "GET", "/params", PROXY, conn=first)[0], 200)
        self.assertEqual(request(self.port, "GET", "/params", PROXY, conn=second)[0], 200)
        mine = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(STRANGER, 0))
        self.addCleanup(mine.close)
        self.assertEqual(request(self.port, "GET", "/params", STRANGER, conn=mine)[0], 200)
        with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
            request(self.port, "GET", "/params", STRANGER)

        sockets = []
        for forwarded, expected in (("203.0.113.1", 101), ("203.0.113.2", 101), ("203.0.113.1", 429)):
            code, sock = ws_handshake(self.port, PROXY, {"X-Forwarded-For": forwarded})
            sockets.append(sock)
            self.assertEqual(code, expected, forwarded)
        for sock in sockets:
            sock.close()


class AccessLogTests(unittest.TestCase):
    timeout = 60

    def test_anonymised_and_off(self) -> None:
        """``anonymised`` cuts the address to its /24 and drops client ids, the query and the user agent; ``off`` logs nothing."""
        port = free_port(socket.SOCK_STREAM)
        stack = start(self, port, "access_log = anonymised")
        request(port, "POST", "/message/room7/client4242?secret=1", PROXY,
                {"X-Forwarded-For": "203.0.113.77", "User-Agent": "TellTale/1.0"})
        line = stack.lines.wait(r"POST /message/", 10).string
        self.assertRegex(line, r'203\.0\.113\.0 - - \[.*\] "POST /message/room7/- HTTP/1.1" \d{3}')
        for leak in ("203.0.113.77", "client4242", "secret", "TellTale"):
            self.assertNotIn(leak, line)

        port = free_port(socket.SOCK_STREAM)
        quiet = start(self, port, "access_log = off")
        request(port, "GET", "/params?marker=quiet", PROXY)
        request(port, "GET", "/healthz-not-here", PROXY)  # a second request: the first one's line would be out by now
        self.assertFalse([l for l in quiet.lines.seen if re.search(r"marker=quiet|healthz-not-here", l)], quiet.lines.text())
