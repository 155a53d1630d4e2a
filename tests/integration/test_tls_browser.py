"""Headless Chromium over TLS: the call page over https on the one TLS port, and a relay-only call via turns: there.

Run like tests/integration/test_browser_call.py (whose helpers this imports): the trial test runs this
module as a script, inside a loopback-only network namespace when ``unshare -n`` works.  The stack has
one TLS listener on 127.0.0.1 for both HTTPS/WSS and TURN over TLS, no plain TURN port, and a certificate
made with :func:`webrtcstack.tls.write_self_signed`; Chromium is told to accept it.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.integration.test_browser_call import drive_tabs, run_browser_module, start_stack, stop_stack
from tests.support import free_port


def stack_ini(port: int, relay_low: int, cert: Path, key: Path) -> str:
    """One TLS port for everything; the only TURN URL browsers get is turns:127.0.0.1:PORT."""
    return f"""\
[turn]
listen =
tls_listen = 127.0.0.1:{port}
relay_ip = 127.0.0.1
relay_ports = {relay_low}-{relay_low + 200}
allow_loopback_peers = yes
static_auth_secret = browser-tls-secret
[http]
listen =
tls_listen = 127.0.0.1:{port}
[tls]
certificate = {cert}
private_key = {key}
[rooms]
bypass_join_confirmation = yes
[signaling]
ping_interval_seconds = 0
[metrics]
enabled = no
"""


def run_tls_call(room: str = "tlsbrowser", wait_s: float = 60.0) -> dict[str, Any]:
    """Start the stack and two https tabs; return what the tabs reported."""
    from webrtcstack.tls import write_self_signed

    tmp = Path(tempfile.mkdtemp(prefix="webrtcstack-tls-browser-"))
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    write_self_signed(["localhost", "127.0.0.1"], str(cert), str(key), days=2)
    port = free_port(socket.SOCK_STREAM)
    stack, stack_log = start_stack(stack_ini(port, 40000 + (port % 20000), cert, key), tmp)
    report: dict[str, Any] = {"tabs": [], "namespace": os.environ.get("WEBRTCSTACK_NETNS", "no")}
    try:
        # Two sites (127.0.0.1 and localhost), so each tab has its own renderer (see test_browser_call).
        urls = [f"https://127.0.0.1:{port}/r/{room}?it=relay", f"https://localhost:{port}/r/{room}?it=relay"]
        drive_tabs(urls, tmp / "profile", report, wait_s=wait_s, extra_flags=("--ignore-certificate-errors",))
    finally:
        stop_stack(stack, stack_log, tmp, report)
    return report


class TlsBrowserCallTests(unittest.TestCase):
    timeout = 240

    def test_https_page_and_relay_only_call_over_turns_on_one_port(self) -> None:
        """Two https tabs on the one TLS port connect relay-only through turns: on that same port and decode video."""
        report = run_browser_module(self, "tests.integration.test_tls_browser", timeout_s=200)
        detail = json.dumps(report, indent=1)[-6000:]
        self.assertEqual((report.get("page_protocol"), report.get("secure_context")), ("https:", True), detail)
        tabs = report["tabs"]
        self.assertEqual(len(tabs), 2, detail)
        for tab in tabs:
            self.assertEqual(tab.get("policy"), "relay", detail)
            self.assertIn(tab.get("ice"), ("connected", "completed"), detail)
            local = tab.get("local") or {}
            self.assertEqual(local.get("type"), "relay", detail)
            self.assertTrue(str(local.get("url", "")).startswith("turns:127.0.0.1:"), detail)
            self.assertGreater(tab.get("framesDecoded", 0), 0, detail)


if __name__ == "__main__":
    print(json.dumps(run_tls_call()))
