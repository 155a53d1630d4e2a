"""``[tls] acme``: what the config must hold for it, the http-01 answers on the redirect port, check-config."""

from __future__ import annotations

import os

from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from webrtcstack.certs.acme_flow import AcmeFiles, Http01Board
from webrtcstack.certs.service import prepare_acme
from webrtcstack.config import ConfigError, acme_names, parse_config
from webrtcstack.ops.redirect import RedirectResource

GOOD = """\
[http]
tls_listen = 127.0.0.1:8443
redirect_listen = 127.0.0.1:8088
public_url = https://Call.Example.org
[tls]
acme = yes
names = www.call.example.org call.example.org
"""


class AcmeConfigTests(unittest.TestCase):
    def error(self, text: str) -> ConfigError:
        with self.assertRaises(ConfigError) as ctx:
            parse_config(text, "etc/test.ini")
        return ctx.exception

    def test_names_are_public_url_host_then_names(self) -> None:
        """The certificate covers public_url's host (lower case) and [tls] names, each once."""
        config = parse_config(GOOD)
        self.assertEqual(acme_names(config), ("call.example.org", "www.call.example.org"))
        self.assertEqual(config.tls.acme_directory, "https://acme-v02.api.letsencrypt.org/directory")

    def test_acme_with_a_certificate_file_is_an_error(self) -> None:
        e = self.error(GOOD + "certificate = /etc/ssl/x.pem\n")
        self.assertEqual((e.section, e.key), ("tls", "certificate"))
        self.assertIn("must be empty with acme = yes", str(e))

    def test_acme_needs_the_redirect_port(self) -> None:
        """http-01 is answered on port 80: without [http] redirect_listen, acme is an error naming it."""
        e = self.error(GOOD.replace("redirect_listen = 127.0.0.1:8088\n", ""))
        self.assertEqual((e.section, e.key), ("tls", "acme"))
        self.assertIn("redirect_listen", str(e))

    def test_acme_needs_a_tls_listener_and_a_name(self) -> None:
        e = self.error("[tls]\nacme = yes\n")
        self.assertIn("nothing uses a certificate", str(e))
        e = self.error(GOOD.replace("public_url = https://Call.Example.org\n", "").replace(
            "names = www.call.example.org call.example.org\n", ""))
        self.assertEqual((e.section, e.key), ("tls", "acme"))
        self.assertIn("needs a host name", str(e))

    def test_bad_values(self) -> None:
        e = self.error(GOOD + "acme_directory = http://acme.example/dir\n")
        self.assertEqual((e.section, e.key), ("tls", "acme_directory"))
        e = self.error(GOOD + "acme_email = not-an-address\n")
        self.assertEqual((e.section, e.key), ("tls", "acme_email"))
        e = self.error(GOOD + "names = bad_name!\n")
        self.assertEqual((e.section, e.key), ("tls", "names"))

    def test_unreadable_acme_ca_file_is_a_config_error_at_start(self) -> None:
        """A private ACME server's CA file that cannot be read stops the start with the key named."""
        from twisted.internet import task

        from webrtcstack.service import build_service

        config = parse_config(GOOD + f"acme_ca_file = {self.mktemp()}\n[stack]\nstate_dir = {self.mktemp()}\n",
                              "etc/test.ini")
        with self.assertRaises(ConfigError) as ctx:
            build_service(config, task.Clock(), install_signals=False)
        self.assertEqual((ctx.exception.section, ctx.exception.key), ("tls", "acme_ca_file"))
        self.assertIn("cannot read it", str(ctx.exception))


class PlaceholderTests(unittest.TestCase):
    def test_first_start_serves_a_placeholder_and_orders_at_once(self) -> None:
        """With nothing kept, a self-signed placeholder for the names lets TLS start; the order is due now."""
        state = os.path.abspath(self.mktemp())
        store, plan, files = prepare_acme(parse_config(GOOD), state)
        self.assertTrue(store.info.self_signed)
        self.assertEqual(set(store.info.names), {"call.example.org", "www.call.example.org"})
        self.assertEqual(plan.due_at(), 0.0)
        self.assertEqual(os.stat(files.private_key).st_mode & 0o777, 0o600)

    def test_a_kept_certificate_from_another_directory_is_replaced(self) -> None:
        """A certificate kept from a run on another ACME directory (staging) does not count."""
        from webrtcstack.tls import self_signed_certificate

        state = os.path.abspath(self.mktemp())
        files = AcmeFiles.under(state)
        cert, key = self_signed_certificate(["call.example.org", "www.call.example.org"])
        files.write(cert, key, {"directory": "https://acme-staging-v02.api.letsencrypt.org/directory"})
        _, plan, _ = prepare_acme(parse_config(GOOD), state)
        self.assertEqual(plan.due_at(), 0.0)


class Http01Tests(unittest.TestCase):
    def render(self, resource: RedirectResource, path: bytes) -> tuple[int, bytes]:
        request = DummyRequest(path.strip(b"/").split(b"/"))
        request.path = path
        request.uri = path
        body = resource.render(request)
        return request.responseCode or 200, body

    def test_redirect_port_answers_pending_challenges_only(self) -> None:
        """The redirect listener answers the tokens of a running order; other tokens get 404, other paths 301."""
        board = Http01Board()
        resource = RedirectResource(parse_config(GOOD), board=board)
        board.publish("tok_EN-1", "tok_EN-1.thumbprint")
        self.assertEqual(self.render(resource, b"/.well-known/acme-challenge/tok_EN-1"), (200, b"tok_EN-1.thumbprint"))
        self.assertEqual(self.render(resource, b"/.well-known/acme-challenge/other")[0], 404)
        self.assertEqual(self.render(resource, b"/.well-known/acme-challenge/../x")[0], 404)
        board.withdraw("tok_EN-1")
        self.assertEqual(self.render(resource, b"/.well-known/acme-challenge/tok_EN-1")[0], 404)
        self.assertEqual(self.render(resource, b"/r/room")[0], 301)
