"""Headless Chromium loads the call page over the certificate the stack got from pebble, trusting pebble's root.

Run like tests/integration/test_browser_call.py: the trial test runs this
module as a script inside a loopback-only network namespace.  The script
starts pebble and its DNS, the stack with ``[tls] acme = yes``, waits for
the certificate, puts pebble's root (new each pebble start) into a fresh
NSS database as a trusted CA -- how a root is trusted for Chromium on Linux
-- and opens ``https://call.test:PORT/r/ROOM`` with no certificate flags.
Chromium shows its "Privacy error" page instead when the certificate does
not chain to that root or does not name call.test (tried: without the
root, the page is ``chrome-error:`` titled "Privacy error").
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.integration.test_browser_call import (CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, run_browser_module,
                                                start_stack, stop_stack)
from tests.support import Pebble, free_port, need_tool

HOST = "call.test"


class _Cleanups:
    """What :class:`tests.support.Pebble` needs of a test case, for a script."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cleanups: list[Any] = []
        self.made = 0

    def mktemp(self) -> str:
        self.made += 1
        return str(self.tmp / f"t{self.made}")

    def addCleanup(self, f: Any, *args: Any) -> None:
        self.cleanups.append((f, args))

    def run(self) -> None:
        for f, args in reversed(self.cleanups):
            f(*args)


def trust_root(home: Path, root_pem: bytes) -> None:
    """A fresh NSS database in ``home/.pki/nssdb`` with ``root_pem`` trusted to issue server certificates."""
    certutil = shutil.which("certutil") or "certutil"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    root = home / "root.pem"
    root.write_bytes(root_pem)
    subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    subprocess.run([certutil, "-A", "-d", f"sql:{db}", "-n", "pebble-root", "-t", "C,,", "-i", str(root)],
                   check=True, capture_output=True)


def run_acme_page() -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tmp = Path(tempfile.mkdtemp(prefix="webrtcstack-acme-browser-"))
    cleanups = _Cleanups(tmp)
    tls_port, redirect_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    report: dict[str, Any] = {"namespace": os.environ.get("WEBRTCSTACK_NETNS", "no"), "port": tls_port}
    try:
        pebble = Pebble(cleanups, redirect_port)
        stack, lines = start_stack(f"""\
[stack]
state_dir = {tmp / "state"}
[turn]
enabled = no
[http]
listen =
tls_listen = 127.0.0.1:{tls_port}
redirect_listen = 127.0.0.1:{redirect_port}
public_url = https://{HOST}:{tls_port}
[tls]
acme = yes
acme_directory = {pebble.directory_url}
acme_ca_file = {pebble.ca_file}
[rooms]
bypass_join_confirmation = yes
[metrics]
enabled = no
""", tmp)
        try:
            lines.wait(r"acme: certificate issued for", 60)
            home = tmp / "home"
            trust_root(home, pebble.root_pem())
            os.environ["HOME"] = str(home)
            options = webdriver.ChromeOptions()
            options.binary_location = CHROMIUM
            flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--host-resolver-rules")]
            flags.append(f"--host-resolver-rules=MAP {HOST} 127.0.0.1, MAP * ~NOTFOUND")
            for flag in flags + [f"--user-data-dir={tmp / 'profile'}"]:
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
            try:
                driver.set_page_load_timeout(30)
                driver.get(f"https://{HOST}:{tls_port}/r/acmepage")
                report["title"] = driver.title
                report["page_protocol"] = driver.execute_script("return location.protocol")
                report["host"] = driver.execute_script("return location.host")
                report["secure_context"] = driver.execute_script("return window.isSecureContext")
                report["heading"] = driver.execute_script(
                    "const h = document.querySelector('h1'); return h ? h.textContent : null")
            finally:
                driver.quit()
        finally:
            stop_stack(stack, lines, tmp / "gone", report)
    finally:
        cleanups.run()
        shutil.rmtree(tmp, ignore_errors=True)
    return report


class AcmeBrowserTests(unittest.TestCase):
    timeout = 200

    def test_chromium_trusts_the_issued_certificate(self) -> None:
        """The page at https://call.test loads in Chromium over pebble's certificate, with only pebble's root trusted."""
        need_tool("certutil", "libnss3-tools")
        need_tool("pebble", "pebble")
        report = run_browser_module(self, "tests.certs.test_acme_browser", timeout_s=150)
        detail = json.dumps(report, indent=1)[-4000:]
        self.assertEqual((report.get("page_protocol"), report.get("host")), ("https:", f"{HOST}:{report['port']}"), detail)
        self.assertEqual(report.get("title"), "webrtcstack call", detail)
        self.assertEqual(report.get("heading"), "Video call", detail)
        self.assertTrue(report.get("secure_context"), detail)


if __name__ == "__main__":
    print(json.dumps(run_acme_page()))
