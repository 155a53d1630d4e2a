"""Tests for :mod:`webrtcstack.turn.auth`."""

import base64
import hashlib
import hmac

from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.turn.auth import (
    FEATURE_PASSWORD_ALGORITHMS,
    FEATURE_USERNAME_ANONYMITY,
    CredentialStore,
    NonceManager,
    PasswordAlgorithm,
    long_term_key,
    opaque_string,
    rest_password,
    userhash,
)


class KeyTests(SynchronousTestCase):
    def test_md5_key(self) -> None:
        """The MD5 key is MD5(user:realm:password), as in RFC 5769 §2.4."""
        self.assertEqual(long_term_key("user", "realm", "pass"), hashlib.md5(b"user:realm:pass").digest())

    def test_sha256_key(self) -> None:
        """The SHA-256 key is SHA-256 over the same text."""
        self.assertEqual(long_term_key("u", "r", "p", PasswordAlgorithm.SHA256), hashlib.sha256(b"u:r:p").digest())

    def test_opaque_string_vector(self) -> None:
        """OpaqueString maps the RFC 8489 test vector password to TheMatrIX."""
        self.assertEqual(opaque_string("The\u00adM\u00aatr\u2168"), "TheMatrIX")

    def test_userhash_vector(self) -> None:
        """USERHASH matches the RFC 8489 B.1 vector's value."""
        name = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
        self.assertEqual(userhash(name, "example.org").hex()[:8], "4a3cf38f")

    def test_rest_password(self) -> None:
        """The REST password is base64 HMAC-SHA1 of the username with the secret."""
        expected = base64.b64encode(hmac.new(b"secret", b"123:bob", hashlib.sha1).digest()).decode()
        self.assertEqual(rest_password("secret", "123:bob"), expected)

    def test_users_file_is_strict(self) -> None:
        """A users file has name:password lines, comments and blanks; a bad line is an error naming the file and line."""
        from webrtcstack.config import ConfigError, parse_config, read_users_file

        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# c\n\nalice:pw\nbob:x:y\n")
        config = parse_config(f"[turn]\nusers_file = {path}\n", "etc/t.ini")
        self.assertEqual(read_users_file(config), (("alice", "pw"), ("bob", "x:y")))
        with open(path, "a") as f:
            f.write("bad\n")
        with self.assertRaises(ConfigError) as ctx:
            read_users_file(config)
        self.assertEqual((ctx.exception.section, ctx.exception.key), ("turn", "users_file"))
        self.assertIn(f"{path}: line 5: 'bad' is not name:password", str(ctx.exception))


class CredentialStoreTests(SynchronousTestCase):
    def test_static_user(self) -> None:
        """A static user's key is derived from the password with the chosen algorithm."""
        store = CredentialStore("r", [("alice", "pw")])
        self.assertEqual(store.candidate_keys("alice", PasswordAlgorithm.MD5, 0), ([long_term_key("alice", "r", "pw")], ""))
        keys, _ = store.candidate_keys("alice", PasswordAlgorithm.SHA256, 0)
        self.assertEqual(keys, [long_term_key("alice", "r", "pw", PasswordAlgorithm.SHA256)])

    def test_precomputed_key(self) -> None:
        """A 0x password is the MD5 key itself and cannot serve SHA-256."""
        key = long_term_key("bob", "r", "pw")
        store = CredentialStore("r", [("bob", "0x" + key.hex())])
        self.assertEqual(store.candidate_keys("bob", PasswordAlgorithm.MD5, 0), ([key], ""))
        self.assertEqual(store.candidate_keys("bob", PasswordAlgorithm.SHA256, 0), ([], "algorithm"))

    def test_unknown(self) -> None:
        """An unknown name without REST secrets has no key."""
        self.assertEqual(CredentialStore("r").candidate_keys("x", PasswordAlgorithm.MD5, 0), ([], "unknown_user"))

    def test_rest_every_secret(self) -> None:
        """A REST username gets one candidate key per secret, for rotation."""
        store = CredentialStore("r", secrets=["s1secret", "s2secret"])
        keys, reason = store.candidate_keys("2000:bob", PasswordAlgorithm.MD5, 1000)
        self.assertEqual(reason, "")
        self.assertEqual(keys, [long_term_key("2000:bob", "r", rest_password(s, "2000:bob")) for s in ("s1secret", "s2secret")])

    def test_rest_expired(self) -> None:
        """A REST username whose expiry has passed is refused."""
        store = CredentialStore("r", secrets=["s1secret"])
        self.assertEqual(store.candidate_keys("999:bob", PasswordAlgorithm.MD5, 1000), ([], "expired"))

    def test_rest_separator_and_bare(self) -> None:
        """The separator is configurable and a bare timestamp is a valid REST username."""
        store = CredentialStore("r", secrets=["s1secret"], separator="-")
        self.assertEqual(len(store.candidate_keys("2000-bob", PasswordAlgorithm.MD5, 0)[0]), 1)
        self.assertEqual(len(store.candidate_keys("2000", PasswordAlgorithm.MD5, 0)[0]), 1)
        self.assertEqual(store.candidate_keys("bob-2000", PasswordAlgorithm.MD5, 0), ([], "unknown_user"))

    def test_userhash_lookup(self) -> None:
        """Static users can be found by their USERHASH."""
        store = CredentialStore("r", [("alice", "pw")])
        self.assertEqual(store.username_for_hash(userhash("alice", "r")), "alice")
        self.assertIsNone(store.username_for_hash(b"\0" * 32))


class KeyCacheTests(SynchronousTestCase):
    def test_changed_password_on_reload(self) -> None:
        """After set_users (a reload), a changed password gives the new key, not the cached one."""
        store = CredentialStore("r", [("alice", "old")])
        self.assertEqual(store.candidate_keys("alice", PasswordAlgorithm.MD5, 0)[0], [long_term_key("alice", "r", "old")])
        store.set_users([("alice", "new")])
        self.assertEqual(store.candidate_keys("alice", PasswordAlgorithm.MD5, 0)[0], [long_term_key("alice", "r", "new")])

    def test_removed_user_on_reload(self) -> None:
        """A user removed on reload has no key any more, cached or not."""
        store = CredentialStore("r", [("alice", "pw")])
        store.candidate_keys("alice", PasswordAlgorithm.MD5, 0)
        store.set_users([])
        self.assertEqual(store.candidate_keys("alice", PasswordAlgorithm.MD5, 0), ([], "unknown_user"))

    def test_cached_per_algorithm(self) -> None:
        """MD5 and SHA-256 keys of one user are cached separately and each stays right."""
        store = CredentialStore("r", [("alice", "pw")])
        for _ in range(2):
            self.assertEqual(store.candidate_keys("alice", PasswordAlgorithm.MD5, 0)[0], [long_term_key("alice", "r", "pw")])
            self.assertEqual(store.candidate_keys("alice", PasswordAlgorithm.SHA256, 0)[0],
                             [long_term_key("alice", "r", "pw", PasswordAlgorithm.SHA256)])
        self.assertEqual(store.cached_key_count(), (2, 0))

    def test_realm_change(self) -> None:
        """A new realm gives keys for the new realm, for static and REST users."""
        store = CredentialStore("r", [("alice", "pw")], secrets=["s1"])
        store.candidate_keys("alice", PasswordAlgorithm.MD5, 0)
        store.candidate_keys("2000:bob", PasswordAlgorithm.MD5, 0)
        store.realm = "other"
        self.assertEqual(store.candidate_keys("alice", PasswordAlgorithm.MD5, 0)[0],
                         [long_term_key("alice", "other", "pw")])
        self.assertEqual(store.candidate_keys("2000:bob", PasswordAlgorithm.MD5, 0)[0],
                         [long_term_key("2000:bob", "other", rest_password("s1", "2000:bob"))])

    def test_rest_secret_rotation(self) -> None:
        """New REST secrets give keys from the new secrets, not the cached ones."""
        store = CredentialStore("r", secrets=["s1"])
        store.candidate_keys("2000:bob", PasswordAlgorithm.MD5, 0)
        store.secrets = ("s2",)
        self.assertEqual(store.candidate_keys("2000:bob", PasswordAlgorithm.MD5, 0)[0],
                         [long_term_key("2000:bob", "r", rest_password("s2", "2000:bob"))])

    def test_rest_expiry_checked_before_cache(self) -> None:
        """A cached REST key is not used once its username's expiry has passed."""
        store = CredentialStore("r", secrets=["s1"])
        self.assertEqual(len(store.candidate_keys("2000:bob", PasswordAlgorithm.MD5, 1000)[0]), 1)
        self.assertEqual(store.candidate_keys("2000:bob", PasswordAlgorithm.MD5, 2001), ([], "expired"))

    def test_rest_lru_bounded(self) -> None:
        """The REST key cache holds at most rest_cache_size usernames, dropping the least recently used."""
        store = CredentialStore("r", secrets=["s1"], rest_cache_size=2)
        for name in ("2000:a", "2000:b", "2000:a", "2000:c"):
            store.candidate_keys(name, PasswordAlgorithm.MD5, 0)
        self.assertEqual(store.cached_key_count(), (0, 2))
        self.assertEqual(list(store._rest_keys), [("2000:a", PasswordAlgorithm.MD5), ("2000:c", PasswordAlgorithm.MD5)])
        for i in range(100):
            store.candidate_keys(f"2000:user{i}", PasswordAlgorithm.MD5, 0)
        self.assertEqual(store.cached_key_count(), (0, 2))

    def test_returned_list_is_a_copy(self) -> None:
        """A caller changing the returned list does not change the cache."""
        store = CredentialStore("r", secrets=["s1"])
        store.candidate_keys("2000:bob", PasswordAlgorithm.MD5, 0)[0].clear()
        self.assertEqual(len(store.candidate_keys("2000:bob", PasswordAlgorithm.MD5, 0)[0]), 1)


class NonceTests(SynchronousTestCase):
    def test_issue_bytes(self) -> None:
        """issue_bytes is issue as the attribute's bytes, and checks as valid."""
        nonces = NonceManager(600, key=b"k" * 32)
        self.assertEqual(nonces.issue_bytes("192.0.2.1", 5.0), nonces.issue("192.0.2.1", 5.0).encode())
        self.assertTrue(nonces.check(nonces.issue_bytes("192.0.2.1", 5.0).decode(), "192.0.2.1", 6.0))

    def test_round_trip(self) -> None:
        """A nonce is valid for its source until its lifetime ends."""
        nonces = NonceManager(600, FEATURE_PASSWORD_ALGORITHMS | FEATURE_USERNAME_ANONYMITY, key=b"k" * 32)
        nonce = nonces.issue("192.0.2.1", 1000.0)
        self.assertTrue(nonce.startswith("obMatJos2AAAD"))
        self.assertTrue(nonces.check(nonce, "192.0.2.1", 1599.0))
        self.assertFalse(nonces.check(nonce, "192.0.2.1", 1600.0))

    def test_other_source(self) -> None:
        """A nonce issued to one address is not valid from another."""
        nonces = NonceManager(600)
        self.assertFalse(nonces.check(nonces.issue("192.0.2.1", 0), "192.0.2.2", 0))

    def test_other_process(self) -> None:
        """Each process has its own random key, so nonces are unpredictable."""
        self.assertFalse(NonceManager(600).check(NonceManager(600).issue("h", 0), "h", 0))

    def test_tampered(self) -> None:
        """A nonce with a changed time or feature bits is rejected."""
        nonces = NonceManager(600, FEATURE_PASSWORD_ALGORITHMS)
        nonce = nonces.issue("h", 0)
        self.assertFalse(nonces.check(nonce.replace("AAAB", "AAAA", 1), "h", 0))
        self.assertFalse(nonces.check(nonce[:-2] + "AA", "h", 0))
        self.assertFalse(nonces.check("garbage", "h", 0))
        self.assertFalse(nonces.check(nonce[:13] + "!" * 32, "h", 0))

    def test_future(self) -> None:
        """A nonce from the future (clock step back) is stale."""
        nonces = NonceManager(600)
        self.assertFalse(nonces.check(nonces.issue("h", 1000), "h", 900))

    def test_check_bytes(self) -> None:
        """check_bytes takes the NONCE value as received and agrees with check; non-ASCII or junk never passes."""
        nonces = NonceManager(600, FEATURE_PASSWORD_ALGORITHMS, key=b"k" * 32)
        good = nonces.issue_bytes("192.0.2.1", 1000.0)
        self.assertTrue(nonces.check_bytes(good, "192.0.2.1", 1001.0))
        self.assertFalse(nonces.check_bytes(good, "192.0.2.2", 1001.0))
        self.assertFalse(nonces.check_bytes(good, "192.0.2.1", 1600.0))
        prefix = good[:-32]
        for bad in (b"", b"garbage", good[:-1], good + b"A", prefix + b"!" * 32, prefix + "é".encode() * 16,
                    prefix + b"\xff" * 32, good[:-2] + b"AA", prefix + b"A" * 32):
            self.assertFalse(nonces.check_bytes(bad, "192.0.2.1", 1001.0), bad)
            try:
                text = bad.decode("utf-8")
            except UnicodeDecodeError:
                continue
            self.assertFalse(nonces.check(text, "192.0.2.1", 1001.0), bad)
        self.assertFalse(nonces.check("obMatJos2" + "é" * 36, "192.0.2.1", 1001.0))


class DatabaseUserTests(SynchronousTestCase):
    """Users and REST secrets from ``[turn] users_db`` (keys as coturn's turnadmin stores them)."""

    def test_database_user_key_is_used_as_stored(self) -> None:
        store = CredentialStore("north.gov", users=[("bob", "config-pw")])
        key = hashlib.md5(b"alice:north.gov:secret1").digest()
        store.set_database({"alice": key}, ())
        self.assertEqual(store.candidate_keys("alice", PasswordAlgorithm.MD5, 0), ([key], ""))
        self.assertEqual(store.candidate_keys("alice", PasswordAlgorithm.SHA256, 0), ([], "algorithm"))
        self.assertEqual(store.username_for_hash(userhash("alice", "north.gov")), "alice")
        self.assertEqual(store.database_counts(), (1, 0))

    def test_config_user_wins_and_a_new_load_replaces_the_old(self) -> None:
        store = CredentialStore("north.gov", users=[("bob", "config-pw")])
        store.set_database({"bob": bytes(16), "carol": bytes(16)}, ())
        self.assertEqual(store.candidate_keys("bob", PasswordAlgorithm.MD5, 0)[0],
                         [long_term_key("bob", "north.gov", "config-pw", PasswordAlgorithm.MD5)])
        store.candidate_keys("carol", PasswordAlgorithm.MD5, 0)
        store.set_database({}, ())
        self.assertEqual(store.candidate_keys("carol", PasswordAlgorithm.MD5, 0), ([], "unknown_user"))

    def test_database_secrets_join_the_configs(self) -> None:
        """REST usernames are checked against the config's secrets and then the database's (rotation)."""
        store = CredentialStore("north.gov", secrets=("from-config",))
        name = "4102444800:carol"
        only_config = store.candidate_keys(name, PasswordAlgorithm.MD5, 0)[0]
        store.set_database({}, ("from-db", "from-config"))
        keys = store.candidate_keys(name, PasswordAlgorithm.MD5, 0)[0]
        self.assertEqual(keys[0], only_config[0])
        self.assertEqual(keys[1], long_term_key(name, "north.gov", rest_password("from-db", name), PasswordAlgorithm.MD5))
        self.assertEqual(len(keys), 2)
        store.secrets = ("other",)  # a reload keeps the database's
        self.assertEqual(len(store.candidate_keys(name, PasswordAlgorithm.MD5, 0)[0]), 3)
