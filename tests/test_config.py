"""Tests for webrtcstack.config: parsing, validation and located errors."""

from __future__ import annotations

import ipaddress
import os
import re

from twisted.trial import unittest

from webrtcstack import config as cfg
from webrtcstack.config import ConfigError, Endpoint, StackConfig, load_config, parse_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DefaultsTests(unittest.TestCase):
    def test_empty_text_gives_defaults(self) -> None:
        """An empty file yields the built-in defaults, equal to a fresh StackConfig."""
        config = parse_config("", "empty.ini")
        self.assertEqual(config.turn, StackConfig().turn)
        self.assertEqual(config.turn.listen, (Endpoint("0.0.0.0", 3478), Endpoint("::", 3478)))
        self.assertEqual(config.http.listen, (Endpoint("127.0.0.1", 8080),))
        self.assertFalse(config.turn.allow_loopback_peers)
        self.assertEqual(config.turn.relay_ports, (49152, 65535))

    def test_shipped_stack_ini_parses_to_defaults(self) -> None:
        """etc/stack.ini, the embedded default config, parses and equals the defaults."""
        config = load_config(os.path.join(ROOT, "etc", "stack.ini"))
        defaults = StackConfig()
        for section in ("stack", "turn", "http", "tls", "rooms", "signaling"):
            self.assertEqual(getattr(config, section), getattr(defaults, section), section)

    def test_config_is_frozen(self) -> None:
        """Parsed sections cannot be changed after the fact."""
        config = parse_config("")
        with self.assertRaises(Exception):
            config.turn.realm = "x"  # type: ignore[misc]


class ValueTests(unittest.TestCase):
    def test_lists_and_multiline_values(self) -> None:
        """Lists split on commas, spaces and newlines; indented lines continue a value."""
        config = parse_config(
            "[turn]\n"
            "listen = 127.0.0.1:3478, [::1]:3479\n"
            "users = alice:secret1\n"
            "   bob:0x0123456789abcdef0123456789abcdef\n"
            "static_auth_secret = first-secret\n  second-secret\n"
            "denied_peers = 10.0.0.0/8 fd00::/8\n"
            "external_ip = 203.0.113.5/10.0.0.5\n"
            "relay_ports = 50000-50100\n"
        )
        t = config.turn
        self.assertEqual(t.listen, (Endpoint("127.0.0.1", 3478), Endpoint("::1", 3479)))
        self.assertEqual(t.users, (("alice", "secret1"), ("bob", "0x0123456789abcdef0123456789abcdef")))
        self.assertEqual(t.static_auth_secret, ("first-secret", "second-secret"))
        self.assertEqual(t.denied_peers, (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")))
        self.assertEqual(t.external_ip, (("203.0.113.5", "10.0.0.5"),))
        self.assertEqual(t.relay_ports, (50000, 50100))

    def test_booleans(self) -> None:
        """yes/no, true/false, on/off and 1/0 are booleans in any case."""
        for text, value in (("yes", True), ("No", False), ("TRUE", True), ("off", False), ("1", True)):
            config = parse_config(f"[turn]\nallow_loopback_peers = {text}\n")
            self.assertIs(config.turn.allow_loopback_peers, value)

    def test_turn_workers(self) -> None:
        """`[turn] workers` is 1 by default and takes 1 to 16; 0 and 17 are errors naming the key."""
        self.assertEqual(parse_config("", "t.ini").turn.workers, 1)
        self.assertEqual(parse_config("[turn]\nworkers = 16\n", "t.ini").turn.workers, 16)
        for bad in ("0", "17", "two"):
            with self.assertRaises(ConfigError) as ctx:
                parse_config(f"[turn]\nworkers = {bad}\n", "t.ini")
            self.assertEqual((ctx.exception.section, ctx.exception.key), ("turn", "workers"))

    def test_components_can_be_switched_off(self) -> None:
        """enabled = no turns a component off and check-config shows nothing for it."""
        from webrtcstack.service import describe_listeners

        config = parse_config("[turn]\nenabled = no\n[http]\nenabled = no\n[metrics]\nenabled = no\n")
        self.assertEqual(describe_listeners(config), ["nothing enabled"])

    def test_check_config_lists_the_new_turn_surfaces(self) -> None:
        """DTLS, the RFC 5780 alternate ports, the kernel offload and users_db (without its password)."""
        from webrtcstack.service import describe_listeners

        config = parse_config(
            "[turn]\nlisten = 127.0.0.1:3478 127.0.0.2:3478\ntls_listen = 127.0.0.1:5349\ndtls = yes\n"
            "nat_discovery = yes\nkernel_offload = auto\nusers_db = redis://:pw-hidden@127.0.0.1:6379/0\n"
            "[tls]\ncertificate = /c.pem\nprivate_key = /k.pem\n[http]\nenabled = no\n")
        lines = describe_listeners(config)
        self.assertIn("TURN/DTLS  udp      127.0.0.1:5349  (DTLS 1.2 and up)", lines)
        self.assertIn("STUN (RFC 5780 alternate port)  udp  127.0.0.2:3479", lines)
        self.assertIn("TURN kernel offload (auto): XDP on every interface that is up", lines)
        self.assertIn("TURN users_db  redis://127.0.0.1:6379/0", lines)
        self.assertNotIn("pw-hidden", "\n".join(lines))

    def test_endpoint_str_brackets_ipv6(self) -> None:
        """An IPv6 endpoint prints with brackets, IPv4 without."""
        self.assertEqual(str(Endpoint("::", 3478)), "[::]:3478")
        self.assertEqual(str(Endpoint("0.0.0.0", 3478)), "0.0.0.0:3478")


class ErrorTests(unittest.TestCase):
    def assertConfigError(self, text: str, section: str | None, key: str | None, line: int | None, words: str) -> ConfigError:
        with self.assertRaises(ConfigError) as ctx:
            parse_config(text, "etc/test.ini")
        e = ctx.exception
        self.assertEqual((e.filename, e.section, e.key, e.line), ("etc/test.ini", section, key, line))
        self.assertIn(words, str(e))
        self.assertTrue(str(e).startswith("etc/test.ini"))
        return e

    def test_unknown_key_names_file_section_key_line(self) -> None:
        """A misspelt key is an error naming file, section, key and line, with a suggestion."""
        e = self.assertConfigError("[turn]\n\nrealm = x\nlisten_ = 1.2.3.4:5\n", "turn", "listen_", 4, "unknown key")
        self.assertIn("did you mean listen", str(e))
        self.assertIn("etc/test.ini:4: [turn] listen_", str(e))

    def test_readme_error_example_is_what_we_print(self) -> None:
        """The README's example error is the message a dropped letter really gets."""
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        e = self.assertConfigError("[turn]\n\nlisen = 1.2.3.4:5\n", "turn", "lisen", 3, "unknown key")
        self.assertIn(f"webrtcstack: invalid config: bad.ini:3: [turn] lisen: {str(e).split(': ', 2)[2]}\n", readme.replace("etc/test.ini", "bad.ini"))
        self.assertEqual(str(e), "etc/test.ini:3: [turn] lisen: unknown key (did you mean listen?)")

    def test_suggestions(self) -> None:
        """A dropped, added or changed letter names the key meant; a key of another section names its section; a misspelt section is named."""
        cases = [
            ("[turn]\nrelayports = 1\n", "turn", "relayports", "(did you mean relay_ports?)"),
            ("[turn]\nlistenn = 1\n", "turn", "listenn", "(did you mean listen?)"),
            ("[turn]\npublic_url = http://x\n", "turn", "public_url", "it belongs in [http]"),
            ("[turn]\npublic_ur = x\n", "turn", "public_ur", "(did you mean public_url, in [http]?)"),
        ]
        for text, section, key, words in cases:
            e = self.assertConfigError(text, section, key, 2, words)
            self.assertNotIn("allowed in", str(e))
        e = self.assertConfigError("[turn]\nzzz = 1\n", "turn", "zzz", 2, "allowed in [turn]: enabled, listen")
        self.assertConfigError("[trun]\nx = 1\n", "trun", None, 2, "(did you mean [turn]?)")

    def test_unknown_section(self) -> None:
        """An unknown section is an error listing the allowed sections."""
        self.assertConfigError("[trun]\nlisten = 1.2.3.4:5\n", "trun", None, 2, "allowed: [stack], [turn]")

    def test_bad_values_say_what_is_allowed(self) -> None:
        """Each bad value names its key and line and says what is allowed."""
        cases = [
            ("[turn]\nlisten = 1.2.3.4\n", "turn", "listen", 2, "host:port"),
            ("[turn]\nlisten = [::]:70000\n", "turn", "listen", 2, "allowed: 0 to 65535"),
            ("[turn]\nrelay_ports = 60000-50000\n", "turn", "relay_ports", 2, "low <= high"),
            ("[turn]\nallow_loopback_peers = maybe\n", "turn", "allow_loopback_peers", 2, "use yes or no"),
            ("[turn]\nuser_quota = -1\n", "turn", "user_quota", 2, "out of range"),
            ("[turn]\nuser_quota = lots\n", "turn", "user_quota", 2, "not a whole number"),
            ("[turn]\ndenied_peers = 10.0.0.0/33\n", "turn", "denied_peers", 2, "CIDR"),
            ("[turn]\nusers = alice\n", "turn", "users", 2, "name:password"),
            ("[turn]\nstatic_auth_secret = short\n", "turn", "static_auth_secret", 2, "too easy to guess"),
            ("[turn]\nrelay_ip = not-an-ip\n", "turn", "relay_ip", 2, "not an IP address"),
            ("[rooms]\ncapacity = 1\n", "rooms", "capacity", 2, "allowed: 2 to 6"),
            ("[http]\npublic_url = ftp://x\n", "http", "public_url", 2, "base URL"),
            ("[signaling]\nallowed_origins = example.org\n", "signaling", "allowed_origins", 2, "origin"),
        ]
        for text, section, key, line, words in cases:
            self.assertConfigError(text, section, key, line, words)

    def test_syntax_errors(self) -> None:
        """Lines that are neither sections nor keys, keys before sections and duplicates are errors."""
        self.assertConfigError("[turn]\nthis is not a key\n", "turn", None, 2, "cannot read line")
        self.assertConfigError("realm = x\n", None, "realm", 1, "before any [section]")
        self.assertConfigError("[turn]\nrealm = a\nrealm = b\n", "turn", "realm", 3, "twice")
        self.assertConfigError("[turn]\n[turn]\n", "turn", None, 2, "appears twice")

    def test_cross_key_checks(self) -> None:
        """Checks across keys name the key at fault and its line."""
        self.assertConfigError("[turn]\ndefault_lifetime_s = 900\nmax_lifetime_s = 600\n", "turn", "max_lifetime_s", 3, "below default_lifetime_s")
        self.assertConfigError("[turn]\nrelay_ip = 10.0.0.1 10.0.0.2\n", "turn", "relay_ip", 2, "one address per family")
        self.assertConfigError("[http]\ntls_listen = 0.0.0.0:8443\n", "tls", "certificate", None, "required because http tls_listen")
        self.assertConfigError("[turn]\nlisten = 127.0.0.1:8080\n", "http", "listen", None, "also used by [turn] listen")
        self.assertConfigError("[turn]\nlisten = 127.0.0.1:0\nworkers = 2\n", "turn", "listen", 2, "port 0 (any free port) is not allowed")
        self.assertConfigError("[turn]\nlisten = 127.0.0.1:3478\nworkers = 2\ntcp_relay = yes\n", "turn", "tcp_relay", 4,
                               "needs workers = 1")
        parse_config("[turn]\nlisten = 127.0.0.1:3478\nworkers = 2\ntcp_relay = no\n")
        redis = "[redis]\nurl = redis://127.0.0.1:6379/0\n"
        self.assertConfigError(redis, "turn", "static_auth_secret", None, "required with [redis] url")
        self.assertConfigError(redis + "[turn]\nstatic_auth_secret = long-enough\nlisten = 127.0.0.1:3478\nworkers = 2\n",
                               "turn", "workers", 6, "run one node per core instead")
        parse_config(redis + "[turn]\nenabled = no\n")
        parse_config(redis + "[turn]\nstatic_auth_secret = long-enough\n")

    def test_missing_file(self) -> None:
        """A missing file is a ConfigError naming the file."""
        with self.assertRaises(ConfigError) as ctx:
            load_config("/nonexistent/stack.ini")
        self.assertIn("/nonexistent/stack.ini", str(ctx.exception))
        self.assertIn("cannot read", str(ctx.exception))


class DocumentationTests(unittest.TestCase):
    def _sections(self, text: str, heading: str) -> dict[str, str]:
        parts = re.split(heading, text)
        return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}

    def test_every_key_is_in_stack_ini(self) -> None:
        """etc/stack.ini lists every key of the schema in its section, with a comment line above it."""
        with open(os.path.join(ROOT, "etc", "stack.ini")) as f:
            sections = self._sections(f.read(), r"(?m)^\[(\w+)\]$")
        for info in cfg.schema():
            body = sections.get(info.section, "")
            self.assertRegex(body, rf"(?m)^# .+\n{info.key} =", f"[{info.section}] {info.key} missing from etc/stack.ini")

    def test_every_key_is_documented(self) -> None:
        """docs/configuration.md documents every key of the schema under its section."""
        with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
            sections = self._sections(f.read(), r"(?m)^### \[(\w+)\]$")
        for info in cfg.schema():
            self.assertIn(f"| `{info.key}` |", sections.get(info.section, ""), f"[{info.section}] {info.key} undocumented")

    def test_generated_files_are_current(self) -> None:
        """etc/stack.ini is exactly the schema's default file, and docs/configuration.md holds the schema's tables verbatim."""
        with open(os.path.join(ROOT, "etc", "stack.ini")) as f:
            self.assertEqual(f.read(), cfg.render_default_ini())
        with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
            self.assertIn(cfg.render_markdown_reference().strip(), f.read())
