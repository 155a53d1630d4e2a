"""ICE server URLs and coturn-style TURN REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

from twisted.trial import unittest

from webrtcstack.config import ConfigError, parse_config
from webrtcstack.rooms.credentials import ice_servers, ice_urls, rest_credentials


class RestCredentialTests(unittest.TestCase):
    def test_worked_example(self) -> None:
        """The password is base64(HMAC-SHA1(secret, username)) with username expiry:name."""
        username, password = rest_credentials("north", "alice", ttl_s=100, now=1699999900)
        self.assertEqual(username, "1700000000:alice")
        expected = base64.b64encode(hmac.new(b"north", b"1700000000:alice", hashlib.sha1).digest()).decode()
        self.assertEqual(password, expected)
        self.assertEqual(len(password), 28)

    def test_separator_and_bare(self) -> None:
        """The separator is configurable and an empty name gives a bare timestamp."""
        self.assertEqual(rest_credentials("s", "bob", ttl_s=1, now=9.7, separator="-")[0], "10-bob")
        self.assertEqual(rest_credentials("s", "", ttl_s=1, now=9)[0], "10")


class IceUrlTests(unittest.TestCase):
    def test_wildcards_use_request_host(self) -> None:
        """0.0.0.0 takes the request's host; :: is skipped for a v4 or name host."""
        cfg = parse_config("[turn]\nlisten = 0.0.0.0:3478 [::]:3478\n")
        turn, stun = ice_urls(cfg, "call.example.org:8080")
        self.assertEqual(turn, ["turn:call.example.org:3478?transport=udp", "turn:call.example.org:3478?transport=tcp"])
        self.assertEqual(stun, ["stun:call.example.org:3478"])

    def test_v6_request_host(self) -> None:
        """A v6 request host is used (bracketed) for both wildcards."""
        cfg = parse_config("[turn]\nlisten = 0.0.0.0:3478 [::]:3479\n")
        turn, stun = ice_urls(cfg, "[2001:db8::1]:8080")
        self.assertIn("turn:[2001:db8::1]:3479?transport=udp", turn)
        self.assertIn("stun:[2001:db8::1]:3478", stun)

    def test_public_url_wins_over_host(self) -> None:
        """public_url's host is used instead of the Host header."""
        cfg = parse_config("[turn]\nlisten = 0.0.0.0:3478\n[http]\npublic_url = https://meet.example.org\n")
        self.assertEqual(ice_urls(cfg, "evil.example")[1], ["stun:meet.example.org:3478"])

    def test_external_ip_wins(self) -> None:
        """external_ip's public address per family wins over everything, and maps a private listen address."""
        cfg = parse_config("[turn]\nlisten = 0.0.0.0:3478 [::]:3478 10.0.0.5:3480\n"
                           "external_ip = 203.0.113.7/10.0.0.5 2001:db8::7\n"
                           "[http]\npublic_url = https://meet.example.org\n")
        _, stun = ice_urls(cfg, "h")
        self.assertEqual(stun, ["stun:203.0.113.7:3478", "stun:[2001:db8::7]:3478", "stun:203.0.113.7:3480"])

    def test_specific_listen_and_tls(self) -> None:
        """A specific listen address is used as is; tls_listen gives turns: URLs."""
        cfg = parse_config("[turn]\nlisten = 127.0.0.1:3478\ntls_listen = 0.0.0.0:5349\n"
                           "[tls]\ncertificate = /c.pem\nprivate_key = /k.pem\n")
        turn, _ = ice_urls(cfg, "example.org")
        self.assertEqual(turn, ["turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp",
                                "turns:example.org:5349?transport=tcp"])

    def test_ice_servers_shape(self) -> None:
        """The answer has TURN urls with credentials, then STUN urls without, urls always arrays."""
        cfg = parse_config("[turn]\nlisten = 127.0.0.1:3478\n[rooms]\nturn_credential_ttl_seconds = 600\n")
        answer = ice_servers(cfg, "secretsecret", "h", now=1000, name="n")
        self.assertEqual(answer["lifetimeDuration"], "600s")
        turn, stun = answer["iceServers"]
        self.assertEqual(turn["username"], "1600:n")
        self.assertEqual(turn["credential"], rest_credentials("secretsecret", "n", ttl_s=600, now=1000)[1])
        self.assertEqual(stun, {"urls": ["stun:127.0.0.1:3478"]})

    def test_extra_ice_servers(self) -> None:
        """extra_ice_urls come after ours: their TURN URLs with credentials minted from extra_ice_secret, their STUN URLs bare; with [turn] off they are all there is."""
        cfg = parse_config("[turn]\nenabled = no\n[rooms]\nturn_credential_ttl_seconds = 600\n"
                           "extra_ice_urls = turn:coturn.example:3478?transport=udp stun:coturn.example turns:coturn.example:5349?transport=tcp\n"
                           "extra_ice_secret = coturn-static-secret\n")
        servers = ice_servers(cfg, "our-secret-1", "h", now=1000, name="n")["iceServers"]
        self.assertEqual(servers, [
            {"urls": ["turn:coturn.example:3478?transport=udp", "turns:coturn.example:5349?transport=tcp"], "username": "1600:n",
             "credential": rest_credentials("coturn-static-secret", "n", ttl_s=600, now=1000)[1]},
            {"urls": ["stun:coturn.example"]},
        ])
        ours = parse_config("[turn]\nlisten = 127.0.0.1:3478\nstatic_auth_secret = shared-secret\n"
                            "[rooms]\nextra_ice_urls = turn:[2001:db8::1]:3478\n")
        servers = ice_servers(ours, "shared-secret", "h", now=0, name="n")["iceServers"]
        self.assertEqual([s["urls"] for s in servers], [["turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"],
                                                        ["stun:127.0.0.1:3478"], ["turn:[2001:db8::1]:3478"]])
        self.assertEqual(servers[2]["credential"], servers[0]["credential"])  # one secret for both

    def test_extra_ice_servers_with_a_fixed_user(self) -> None:
        """extra_ice_username/credential are handed out as they are (a coturn user of lt-cred-mech); they go together."""
        config = parse_config("[turn]\nenabled = no\n[rooms]\nextra_ice_urls = turn:coturn.example:3478\n"
                              "extra_ice_username = webcall\nextra_ice_credential = pass-word\n")
        servers = ice_servers(config, "secret-unused", "call.example", now=1000.0)["iceServers"]
        self.assertEqual(servers, [{"urls": ["turn:coturn.example:3478"], "username": "webcall", "credential": "pass-word"}])
        with self.assertRaises(ConfigError) as ctx:
            parse_config("[rooms]\nextra_ice_urls = turn:coturn.example\nextra_ice_username = webcall\n")
        self.assertEqual(ctx.exception.key, "extra_ice_credential")

    def test_extra_ice_urls_checked(self) -> None:
        """A URL that is not stun:/turn:/turns: is refused; extra TURN URLs need a secret they share with us."""
        from webrtcstack.config import ConfigError

        with self.assertRaises(ConfigError) as ctx:
            parse_config("[rooms]\nextra_ice_urls = https://coturn.example\n")
        self.assertIn("is not an ICE server URL", str(ctx.exception))
        with self.assertRaises(ConfigError) as ctx:
            parse_config("[rooms]\nextra_ice_urls = turn:coturn.example\n")
        self.assertEqual(ctx.exception.key, "extra_ice_secret")
        parse_config("[rooms]\nextra_ice_urls = stun:stun.example\n")

    def test_turn_disabled(self) -> None:
        """With TURN disabled there are no ICE servers."""
        cfg = parse_config("[turn]\nenabled = no\n")
        self.assertEqual(ice_servers(cfg, "secretsecret", "h", now=0)["iceServers"], [])
