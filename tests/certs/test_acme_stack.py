"""The stack gets, renews and keeps its certificate from a real ACME server: Debian's pebble.

Pebble (Let's Encrypt's test server) issues certificates that live
``VALIDITY_S`` seconds, so a renewal comes within the test; its DNS
(pebble-challtestsrv) sends every name to 127.0.0.1, where the stack's
redirect listener answers http-01.  Each step is checked on the wire: the
certificate the TLS port presents verifies against pebble's root for the
public_url's host name.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import urllib.request

from twisted.trial import unittest

from tests.support import Pebble, StackProcess, free_port

#: certificates this short-lived are renewed (at a third left) about every 13 s
VALIDITY_S = 20
HOST = "call.test"


def served_certificate(port: int, root_pem: bytes, host: str = HOST) -> dict:
    """Handshake with the TLS port as ``host``, verifying against ``root_pem``; the leaf as ssl reports it."""
    ctx = ssl.create_default_context(cadata=root_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            info = tls.getpeercert()
    import hashlib

    return {"sha256": hashlib.sha256(der).hexdigest(), "notAfter": info["notAfter"],
            "san": [v for _, v in info.get("subjectAltName", ())]}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def acme_ini(pebble: Pebble, tls_port: int, redirect_port: int, metrics_port: int, state: str) -> str:
    return f"""\
[stack]
state_dir = {state}
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
acme_email = ops@{HOST}
names = www.{HOST}
[metrics]
listen = 127.0.0.1:{metrics_port}
"""


class AcmeStackTests(unittest.TestCase):
    timeout = 180

    def test_issue_renew_fail_keep_and_recover(self) -> None:
        """First issue, a renewal swapped in live, a failed renewal keeping the old certificate, then recovery."""
        tls_port, redirect_port, metrics_port = (free_port(socket.SOCK_STREAM) for _ in range(3))
        pebble = Pebble(self, redirect_port, validity_s=VALIDITY_S)
        state = os.path.abspath(self.mktemp())
        stack = StackProcess(self, acme_ini(pebble, tls_port, redirect_port, metrics_port, state))
        ops = f"http://127.0.0.1:{metrics_port}"

        # 1. First issue: the placeholder gives way to pebble's certificate for both names.
        stack.lines.wait(r"acme: certificate issued for", 60)
        root = pebble.root_pem()
        first = served_certificate(tls_port, root)
        self.assertEqual(sorted(first["san"]), [HOST, f"www.{HOST}"])
        served_certificate(tls_port, root, host=f"www.{HOST}")
        self.assertEqual(get(ops + "/healthz"), (200, "ok\n"))
        status = json.loads(get(ops + "/status")[1])
        self.assertEqual(status["acme"]["state"], "valid", status)
        self.assertEqual(status["acme"]["issued"], 1, status)
        key_mode = os.stat(os.path.join(state, "acme", "private_key.pem")).st_mode & 0o777
        self.assertEqual(key_mode, 0o600)

        # 2. Renewal, with no restart: a new certificate on the same listener.
        stack.lines.wait(r"acme: certificate issued for", VALIDITY_S * 2)
        second = served_certificate(tls_port, root)
        self.assertNotEqual(second["sha256"], first["sha256"])
        metrics = get(ops + "/metrics")[1]
        self.assertIn("webrtcstack_acme_certificates_issued_total 2.0", metrics)

        # 3. The ACME server goes away: the renewal fails, the old certificate stays, and it is said.
        pebble.kill()
        stack.lines.wait(r"acme: certificate renewal failed \(.*\); still serving the certificate", VALIDITY_S * 2)
        self.assertEqual(served_certificate(tls_port, root)["sha256"], second["sha256"])
        code, body = get(ops + "/healthz")
        self.assertEqual(code, 200, body)
        self.assertIn("warning: certificate renewal failing", body)
        metrics = get(ops + "/metrics")[1]
        self.assertRegex(metrics, r"webrtcstack_acme_renewal_failures [1-9]")
        status = json.loads(get(ops + "/status")[1])
        self.assertEqual(status["acme"]["state"], "renewal failing", status)
        self.assertTrue(status["acme"]["last_error"], status)

        # 4. It comes back (empty: new root, no accounts): the next retry gets a certificate again.
        pebble.start()
        stack.lines.wait(r"acme: certificate issued for", VALIDITY_S * 2)
        third = served_certificate(tls_port, pebble.root_pem())
        self.assertNotEqual(third["sha256"], second["sha256"])
        self.assertEqual(get(ops + "/healthz"), (200, "ok\n"))
