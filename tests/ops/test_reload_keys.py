"""Which changed keys a reload applies and which wait for a restart."""

from __future__ import annotations

from twisted.trial import unittest

from webrtcstack.config import parse_config
from webrtcstack.ops.reload import applied_keys, restart_keys


class ReloadKeyTests(unittest.TestCase):
    def test_worker_count_needs_a_restart(self) -> None:
        """A new [turn] workers is reported as needing a restart, not as applied."""
        old, new = parse_config(""), parse_config("[turn]\nworkers = 2\nuser_quota = 3\n")
        self.assertEqual(restart_keys(old, new), ["[turn] workers"])
        self.assertEqual(applied_keys(old, new), ["[turn] user_quota"])


#: a value other than the default for every key the schema marks restart-only
OTHER_VALUES = {
    ("stack", "max_open_files"): "4096", ("stack", "log_format"): "json", ("stack", "state_dir"): "/srv/state",
    ("turn", "enabled"): "no", ("turn", "listen"): "127.0.0.1:3479", ("turn", "tls_listen"): "127.0.0.1:5349",
    ("turn", "relay_ports"): "50000-50100", ("turn", "relay_ip"): "127.0.0.1", ("turn", "external_ip"): "203.0.113.1",
    ("turn", "workers"): "2", ("turn", "max_tcp_connections"): "7", ("turn", "max_frame_bytes"): "2000",
    ("http", "enabled"): "no", ("http", "listen"): "127.0.0.1:8081", ("http", "tls_listen"): "127.0.0.1:8444",
    ("http", "redirect_listen"): "127.0.0.1:8082", ("http", "acme_webroot"): "/var/www/acme", ("rooms", "enabled"): "no", ("signaling", "enabled"): "no",
    ("signaling", "listen"): "127.0.0.1:8089", ("metrics", "enabled"): "no", ("metrics", "listen"): "127.0.0.1:9642",
    ("redis", "url"): "redis://127.0.0.1:6390/0", ("redis", "password_file"): "/etc/webrtcstack/redis.pw",
    ("redis", "key_prefix"): "other:", ("redis", "node_id"): "node-b", ("redis", "lease_seconds"): "20",
    ("redis", "renew_seconds"): "3", ("redis", "ca_file"): "/etc/ssl/redis-ca.pem",
    ("tls", "acme"): "yes", ("tls", "acme_directory"): "https://acme-staging-v02.api.letsencrypt.org/directory",
    ("tls", "acme_email"): "ops@example.org", ("tls", "acme_ca_file"): "/etc/ssl/acme-ca.pem",
    ("tls", "names"): "www.example.org",
    ("turn", "kernel_offload"): "auto", ("turn", "kernel_offload_interfaces"): "eth0",
    ("turn", "kernel_offload_max_entries"): "1024",
    ("turn", "nat_discovery"): "yes", ("turn", "nat_discovery_port"): "3500",
    ("turn", "users_db"): "sqlite:///var/lib/webrtcstack/turndb", ("turn", "users_db_poll_seconds"): "30",
    ("turn", "dtls"): "yes", ("turn", "dtls_min_version"): "1.0",
}


class SchemaRestartTests(unittest.TestCase):
    def test_restart_keys_come_from_the_schema(self) -> None:
        """RESTART_KEYS is exactly the schema's restart-marked keys, and the issue's three reloadable keys are not among them."""
        from webrtcstack.config import schema
        from webrtcstack.ops.reload import RESTART_KEYS

        self.assertEqual(RESTART_KEYS, {(i.section, i.key) for i in schema() if i.restart})
        self.assertEqual(set(OTHER_VALUES), set(RESTART_KEYS))
        for key in (("http", "max_connections"), ("signaling", "ping_interval_seconds"),
                    ("signaling", "max_message_bytes")):
            self.assertNotIn(key, RESTART_KEYS)

    def test_each_restart_key_is_reported_and_kept(self) -> None:
        """Changing any restart-only key alone is reported as needing a restart, not as applied, and the running value is kept."""
        from webrtcstack.ops.reload import effective_config

        # A TLS base (certificate files are read at start, not by the parser), so TLS keys may change too.
        # A fixed TURN secret too, which [redis] url requires.
        base = "[tls]\ncertificate = /c.pem\nprivate_key = /k.pem\n"
        secret = "static_auth_secret = shared-secret\n"
        old = parse_config(base + "[http]\ntls_listen = 127.0.0.1:8443\n[turn]\n" + secret)
        for (section, key), value in sorted(OTHER_VALUES.items()):
            if (section, key) in (("tls", "acme"), ("turn", "nat_discovery"), ("turn", "dtls")):
                continue  # they change other keys with them: the tests below
            http = {"tls_listen": value} if (section, key) == ("http", "tls_listen") else {"tls_listen": "127.0.0.1:8443"}
            if section == "http" and key != "tls_listen":
                http[key] = value
            lines = [base + (f"{key} = {value}\n" if section == "tls" else ""),
                     "[http]\n" + "".join(f"{k} = {v}\n" for k, v in http.items())]
            if section not in ("http", "tls"):
                lines.append(f"[{section}]\n{key} = {value}\n" + (secret if section == "turn" else ""))
            if section != "turn":
                lines.append("[turn]\n" + secret)
            new = parse_config("".join(lines))
            self.assertEqual(restart_keys(old, new), [f"[{section}] {key}"])
            self.assertEqual(applied_keys(old, new), [])
            self.assertEqual(getattr(getattr(effective_config(old, new), section), key),
                             getattr(getattr(old, section), key))

    def test_turning_nat_discovery_on_needs_a_restart(self) -> None:
        """nat_discovery binds two more sockets: turning it on (with the two addresses it needs) is a restart."""
        from webrtcstack.ops.reload import effective_config

        turn = "[turn]\nlisten = 127.0.0.1:3478 127.0.0.2:3478\n"
        old, new = parse_config(turn), parse_config(turn + "nat_discovery = yes\n")
        self.assertEqual(restart_keys(old, new), ["[turn] nat_discovery"])
        self.assertEqual(applied_keys(old, new), [])
        self.assertFalse(effective_config(old, new).turn.nat_discovery)

    def test_turning_dtls_on_needs_a_restart(self) -> None:
        """dtls binds a UDP socket beside each tls_listen: turning it on is a restart."""
        base = "[tls]\ncertificate = /c.pem\nprivate_key = /k.pem\n[turn]\ntls_listen = 127.0.0.1:5349\n"
        old, new = parse_config(base), parse_config(base + "dtls = yes\n")
        self.assertEqual(restart_keys(old, new), ["[turn] dtls"])
        self.assertEqual(applied_keys(old, new), [])

    def test_turning_acme_on_needs_a_restart(self) -> None:
        """Switching from certificate files to ACME is reported as needing a restart; the running files are kept."""
        from webrtcstack.ops.reload import effective_config

        common = ("[http]\ntls_listen = 127.0.0.1:8443\nredirect_listen = 127.0.0.1:8088\n"
                  "public_url = https://call.example.org\n")
        old = parse_config(common + "[tls]\ncertificate = /c.pem\nprivate_key = /k.pem\n")
        new = parse_config(common + "[tls]\nacme = yes\n")
        self.assertEqual(restart_keys(old, new), ["[tls] acme"])
        kept = effective_config(old, new).tls
        self.assertEqual((kept.acme, kept.certificate, kept.private_key), (False, "/c.pem", "/k.pem"))
        self.assertEqual(applied_keys(old, new), [])
