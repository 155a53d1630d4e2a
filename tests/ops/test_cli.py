"""The admin commands gencert, turn-credentials and status."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
import time

from twisted.internet import reactor, threads
from twisted.trial import unittest

from tests.ops.support import stack_config
from webrtcstack.cli import main, status_url
from webrtcstack.ops.health import build_ops_site
from webrtcstack.ops.metrics import make_registry
from webrtcstack.ops.runtime import StackRuntime
from webrtcstack.sockets import listen_tcp
from webrtcstack.tls import describe_certificate


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


class GencertTests(unittest.TestCase):
    def test_writes_certificate_and_private_key(self) -> None:
        """gencert writes a certificate for every --host and a 0600 key, and refuses to overwrite without --force."""
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        cert, key = os.path.join(base, "c.pem"), os.path.join(base, "k.pem")
        code, out, _ = run("gencert", "--host", "turn.example.org", "--host", "192.0.2.7", "--cert", cert, "--key", key)
        self.assertEqual(code, 0)
        with open(cert, "rb") as f:
            self.assertEqual(describe_certificate(f.read()).names, ("turn.example.org", "192.0.2.7"))
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        self.assertIn(f"certificate = {cert}", out)
        code, _, err = run("gencert", "--host", "x", "--cert", cert, "--key", key)
        self.assertEqual(code, 1)
        self.assertIn("--force", err)
        self.assertEqual(run("gencert", "--host", "x", "--cert", cert, "--key", key, "--force")[0], 0)


class TurnCredentialsTests(unittest.TestCase):
    def write(self, text: str) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_prints_rest_credentials_from_the_secret(self) -> None:
        """The username is expiry:name and the password the base64 HMAC-SHA1 of it under the first secret."""
        path = self.write("[turn]\nstatic_auth_secret = first-secret second-secret\n")
        code, out, _ = run("turn-credentials", "--user", "bob", "--ttl", "600", "-c", path, "--json")
        self.assertEqual(code, 0)
        creds = json.loads(out)
        expiry, _, name = creds["username"].partition(":")
        self.assertEqual(name, "bob")
        self.assertLess(abs(int(expiry) - (time.time() + 600)), 5)
        digest = hmac.new(b"first-secret", creds["username"].encode(), hashlib.sha1).digest()
        self.assertEqual(creds["credential"], base64.b64encode(digest).decode())

    def test_without_a_secret_it_says_so(self) -> None:
        """With no static_auth_secret and no kept secret yet, the command fails with exit status 2 and says why."""
        state = os.path.abspath(self.mktemp())
        code, _, err = run("turn-credentials", "--user", "bob", "-c",
                           self.write(f"[stack]\nstate_dir = {state}\n[turn]\nrealm = x\n"))
        self.assertEqual(code, 2)
        self.assertIn("sets no [turn] static_auth_secret and the stack has not kept one", err)
        self.assertFalse(os.path.exists(state))  # the command never makes one

    def test_kept_secret_is_used(self) -> None:
        """With no static_auth_secret, the secret the stack kept in state_dir mints the credentials."""
        from webrtcstack.state import load_or_create_secret

        state = os.path.abspath(self.mktemp())
        secret = load_or_create_secret(state)
        self.assertEqual(os.stat(os.path.join(state, "turn-secret")).st_mode & 0o777, 0o600)
        self.assertEqual(load_or_create_secret(state), secret)  # made once
        code, out, _ = run("turn-credentials", "--user", "bob", "--json", "-c",
                           self.write(f"[stack]\nstate_dir = {state}\n"))
        self.assertEqual(code, 0)
        creds = json.loads(out)
        digest = hmac.new(secret.encode(), creds["username"].encode(), hashlib.sha1).digest()
        self.assertEqual(creds["credential"], base64.b64encode(digest).decode())


class StatusTests(unittest.TestCase):
    def test_status_url_maps_wildcards_to_loopback(self) -> None:
        """A wildcard metrics address is reached over loopback; IPv6 gets brackets."""
        self.assertEqual(status_url(stack_config("[metrics]\nlisten = 0.0.0.0:9641\n")), "http://127.0.0.1:9641/status")
        self.assertEqual(status_url(stack_config("[metrics]\nlisten = [::]:9641\n")), "http://[::1]:9641/status")

    async def _status(self) -> None:
        runtime = StackRuntime(stack_config("[turn]\nenabled = no\n"), reactor)
        runtime.state = "running"
        port = listen_tcp(reactor, "127.0.0.1", 0, build_ops_site(runtime, make_registry(runtime, process=False)))
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}/status"
        code, out, _ = await threads.deferToThread(run, "status", "--url", url)
        self.assertEqual(code, 0)
        self.assertIn(": running, up", out)
        self.assertIn("allocations: 0", out)
        code, out, _ = await threads.deferToThread(run, "status", "--url", url, "--json")
        self.assertEqual(json.loads(out)["state"], "running")

    def test_status_reads_the_endpoint(self) -> None:
        """status prints the state and counts from a live /status endpoint."""
        from twisted.internet import defer

        return defer.ensureDeferred(self._status())

    def test_status_when_nothing_answers(self) -> None:
        """status exits 1 when nothing listens at the URL."""
        code, _, err = run("status", "--url", "http://127.0.0.1:9/status", "--timeout", "2")
        self.assertEqual(code, 1)
        self.assertIn("no answer", err)


class ConfigWarningTests(unittest.TestCase):
    def test_plain_http_beyond_this_machine_is_warned(self) -> None:
        """check-config accepts a plain-HTTP public_url on a LAN address but warns that browsers will not give it the camera; localhost and https are not warned."""
        def check(text: str) -> str:
            path = os.path.abspath(self.mktemp())
            with open(path, "w") as f:
                f.write(text)
            code, out, _ = run("check-config", path)
            self.assertEqual(code, 0)
            return out

        out = check("[http]\npublic_url = http://10.77.0.1:8080\n")
        self.assertIn("warning: [http] public_url http://10.77.0.1:8080: browsers give a page the camera only over HTTPS", out)
        out = check("[http]\nlisten = 0.0.0.0:8080\n")
        self.assertIn("warning: [http] listen 0.0.0.0:8080 is plain HTTP beyond this machine", out)
        for quiet in ("[http]\npublic_url = http://localhost:8080\n", "[http]\npublic_url = http://[::1]:8080\n",
                      "[http]\npublic_url = https://call.example.org\n", "[http]\nlisten = 127.0.0.1:8080\n"):
            self.assertNotIn("warning", check(quiet), quiet)

    def test_turn_on_a_private_address_without_external_ip_is_warned(self) -> None:
        """TURN relaying from a private address with no external_ip is warned; with external_ip, or public, it is not."""
        from webrtcstack.config import parse_config
        from webrtcstack.service import config_warnings

        def warnings(text: str) -> list[str]:
            return [w for w in config_warnings(parse_config(text)) if w.startswith("[turn]")]

        (line,) = warnings("[turn]\nrelay_ip = 10.0.0.5\n")
        self.assertIn("private address 10.0.0.5 and external_ip is not set", line)
        self.assertTrue(warnings("[turn]\nlisten = 192.168.1.4:3478\n"))
        self.assertEqual(warnings("[turn]\nrelay_ip = 10.0.0.5\nexternal_ip = 203.0.113.4/10.0.0.5\n"), [])
        self.assertEqual(warnings("[turn]\nrelay_ip = 203.0.113.4\n"), [])
        self.assertEqual(warnings("[turn]\nlisten = 0.0.0.0:3478\n"), [])

    def test_certificate_not_for_the_public_host_is_warned(self) -> None:
        """check-config warns when the certificate file does not name public_url's host; a wildcard that covers it is fine."""
        from webrtcstack.tls import write_self_signed

        cert, key = os.path.abspath(self.mktemp()), os.path.abspath(self.mktemp())
        write_self_signed(["other.example.org", "*.call.example.org"], cert, key, days=2)

        def check(public_url: str) -> str:
            path = os.path.abspath(self.mktemp())
            with open(path, "w") as f:
                f.write(f"[http]\ntls_listen = 127.0.0.1:8443\npublic_url = {public_url}\n"
                        f"[tls]\ncertificate = {cert}\nprivate_key = {key}\n")
            code, out, err = run("check-config", path)
            self.assertEqual(code, 0, err)
            return out

        out = check("https://call.example.org")
        self.assertIn(f"warning: [tls] certificate {cert} is for other.example.org, *.call.example.org, not for "
                      "call.example.org", out)
        self.assertNotIn("warning", check("https://www.call.example.org"))
        self.assertNotIn("warning", check("https://other.example.org:8443"))


class AdminCommandTests(unittest.TestCase):
    def test_a_listener_that_is_not_ours_is_a_clear_error(self) -> None:
        """`webrtcstack sessions --url` pointed at some other web server says so in one line, with no traceback."""
        import http.server
        import threading

        class NotOurs(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b"<html>not here</html>")

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), NotOurs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        state = os.path.abspath(self.mktemp())
        os.makedirs(state)
        with open(os.path.join(state, "admin-token"), "w") as f:
            f.write("token\n")
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(f"[stack]\nstate_dir = {state}\n")
        code, out, err = run("sessions", "-c", path, "--url", f"http://127.0.0.1:{server.server_address[1]}")
        self.assertEqual(code, 1)
        self.assertIn("HTTP 404", err)
        self.assertIn("the stack's metrics listener?", err)
        self.assertNotIn("Traceback", err)
