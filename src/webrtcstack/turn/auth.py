# -*- test-case-name: tests.turn.test_auth -*-
"""Long-term credentials (RFC 8489 §9.2) and coturn's REST API secrets.

Rules:

* The key for MESSAGE-INTEGRITY / MESSAGE-INTEGRITY-SHA256 is
  ``H(username ":" OpaqueString(realm) ":" OpaqueString(password))`` where H
  is MD5 (16-byte key, the classic RFC 5389 key) or SHA-256 (32 bytes), chosen
  by PASSWORD-ALGORITHM (RFC 8489 §9.2.2).
* Static users come from ``[turn] users`` / ``users_file``; a password written
  ``0x`` + 32 hex digits is a precomputed MD5 key (coturn's ``-a`` form), which
  therefore cannot serve SHA-256.
* REST API users (coturn's ``static-auth-secret``): the username is
  ``<unix expiry>[<sep><name>]`` and the password is
  ``base64(HMAC-SHA1(secret, username))``.  Every configured secret is tried,
  so secrets can be rotated.  An expiry in the past is refused.
* Nonces are stateless: ``"obMatJos2" + features + base64(issued_at ‖ HMAC)``,
  the HMAC keyed with a per-process random key over the source address, the
  feature bits and the time (RFC 8489 §9.2 nonce cookie).  Nothing is stored
  per nonce, so a 401 costs the server no memory.
* Keys are compared with :func:`hmac.compare_digest` only.
* Derived keys are cached, since every signed request needs one: static
  users' keys per (user, realm, algorithm) until the users, realm or secrets
  are replaced (reload); REST users' keys in a bounded LRU keyed by username,
  looked up only after the expiry check, so an expired credential is refused
  whether or not its key is cached.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import struct
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from webrtcstack.stun.attributes import encode_value
from webrtcstack.stun.constants import AttrType, ErrorCode
from webrtcstack.stun.integrity import long_term_key as long_term_key_md5
from webrtcstack.stun.integrity import long_term_key_sha256, opaque_string, verify_integrity, verify_integrity_sha256

__all__ = [
    "PasswordAlgorithm",
    "CredentialStore",
    "NonceManager",
    "NONCE_COOKIE",
    "FEATURE_PASSWORD_ALGORITHMS",
    "FEATURE_USERNAME_ANONYMITY",
    "opaque_string",
    "long_term_key",
    "userhash",
    "rest_password",
    "Auth",
    "Refusal",
    "Authenticator",
]

NONCE_COOKIE = "obMatJos2"
#: STUN Security Feature bits; per RFC 8489 erratum 6290 bit 0 is the least significant.
FEATURE_PASSWORD_ALGORITHMS = 0x000001
FEATURE_USERNAME_ANONYMITY = 0x000002


class PasswordAlgorithm(enum.IntEnum):
    """PASSWORD-ALGORITHM values (RFC 8489 §18.5)."""

    MD5 = 0x0001
    SHA256 = 0x0002


def long_term_key(username: str, realm: str, password: str,
                  algorithm: PasswordAlgorithm = PasswordAlgorithm.MD5) -> bytes:
    """The long-term credential key for ``algorithm`` (RFC 8489 §9.2.2)."""
    if algorithm is PasswordAlgorithm.SHA256:
        return long_term_key_sha256(username, realm, password)
    return long_term_key_md5(username, realm, password)


def userhash(username: str, realm: str) -> bytes:
    """USERHASH = SHA-256(OpaqueString(username) ":" OpaqueString(realm)) (RFC 8489 §14.4)."""
    return hashlib.sha256(f"{opaque_string(username)}:{opaque_string(realm)}".encode()).digest()


def rest_password(secret: str, username: str) -> str:
    """coturn's REST API password: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _md5_key(password: str) -> bytes | None:
    """The MD5 key written as ``0x`` + 32 hex digits, or None for a plain password."""
    if len(password) == 34 and password[:2].lower() == "0x":
        try:
            return bytes.fromhex(password[2:])
        except ValueError:
            return None
    return None


class CredentialStore:
    """Finds the candidate keys for a username.

    :param realm: the one realm served.
    :param users: ``(name, password)`` pairs (password may be ``0x<md5 key>``).
    :param secrets: REST API shared secrets; empty disables REST usernames.
    :param separator: the REST username separator (coturn ``--rest-api-separator``).
    :param rest_cache_size: how many REST usernames' keys are kept (least
        recently used go first).
    """

    def __init__(self, realm: str, users: Iterable[tuple[str, str]] = (), secrets: Iterable[str] = (),
                 separator: str = ":", rest_cache_size: int = 4096) -> None:
        self._realm = realm
        self._secrets = tuple(secrets)
        self.separator = separator or ":"
        self.rest_cache_size = rest_cache_size
        self._users: dict[str, str] = {}
        #: users and REST secrets from ``[turn] users_db`` (name -> key as coturn's turnadmin stores it)
        self._db_users: dict[str, bytes] = {}
        self._db_secrets: tuple[str, ...] = ()
        self._all_secrets: tuple[str, ...] = self._secrets
        self._by_hash: dict[bytes, str] = {}
        #: (username, algorithm) -> key, for static users; emptied whenever users, realm or secrets change.
        self._static_keys: dict[tuple[str, PasswordAlgorithm], bytes] = {}
        #: (username, algorithm) -> one key per secret, for REST users; bounded LRU.
        self._rest_keys: OrderedDict[tuple[str, PasswordAlgorithm], list[bytes]] = OrderedDict()
        self.set_users(users)

    @property
    def realm(self) -> str:
        """The realm served (part of every key, so setting it empties the key caches)."""
        return self._realm

    @realm.setter
    def realm(self, value: str) -> None:
        if value != self._realm:
            self._realm = value
            self._static_keys.clear()
            self._rest_keys.clear()
            self._rehash()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The REST API secrets (setting them empties the REST key cache)."""
        return self._secrets

    @secrets.setter
    def secrets(self, value: Iterable[str]) -> None:
        value = tuple(value)
        if value != self._secrets:
            self._secrets = value
            self._all_secrets = value + tuple(s for s in self._db_secrets if s not in value)
            self._rest_keys.clear()

    def set_users(self, users: Iterable[tuple[str, str]]) -> None:
        """Replace the static users (at start and on reload); their cached keys go."""
        self._users = dict(users)
        self._rehash()
        self._static_keys.clear()
        # A static user shadows a REST username of the same spelling.
        self._rest_keys.clear()

    def set_database(self, users: dict[str, bytes], secrets: Iterable[str]) -> None:
        """Replace what ``[turn] users_db`` holds for this realm (the shell reads it, off the reactor).

        :param users: name -> long-term key (16 bytes: MD5, as ``turnadmin`` stores it; 32: SHA-256).
            A static user of the config wins over a database user of the same name.
        :param secrets: REST API secrets, used after the config's own.
        """
        self._db_users = dict(users)
        self._db_secrets = tuple(secrets)
        self._all_secrets = self._secrets + tuple(s for s in self._db_secrets if s not in self._secrets)
        self._rehash()
        self._static_keys.clear()
        self._rest_keys.clear()

    def database_counts(self) -> tuple[int, int]:
        """``(users, secrets)`` loaded from ``users_db``."""
        return len(self._db_users), len(self._db_secrets)

    def _rehash(self) -> None:
        names = list(self._db_users) + list(self._users)
        self._by_hash = {userhash(name, self.realm): name for name in names}

    def cached_key_count(self) -> tuple[int, int]:
        """``(static, REST)`` entries in the key caches (for tests and metrics)."""
        return len(self._static_keys), len(self._rest_keys)

    def username_for_hash(self, value: bytes) -> str | None:
        """The static username whose USERHASH is ``value`` (REST users cannot be hashed)."""
        return self._by_hash.get(value)

    def candidate_keys(self, username: str, algorithm: PasswordAlgorithm,
                       now: float) -> tuple[list[bytes], str]:
        """Keys that may have signed a request from ``username``.

        :returns: ``(keys, reason)``; ``reason`` is ``""`` when keys were found,
            else ``"unknown_user"``, ``"expired"`` or ``"algorithm"``.
        """
        cache_key = (username, algorithm)
        key = self._static_keys.get(cache_key)
        if key is not None:
            return [key], ""
        password = self._users.get(username)
        if password is not None:
            md5 = _md5_key(password)
            if md5 is not None:
                if algorithm is not PasswordAlgorithm.MD5:
                    return [], "algorithm"
                key = md5
            else:
                key = long_term_key(username, self.realm, password, algorithm)
            self._static_keys[cache_key] = key
            return [key], ""
        stored = self._db_users.get(username)
        if stored is not None:
            wanted = 16 if algorithm is PasswordAlgorithm.MD5 else 32
            return ([stored], "") if len(stored) == wanted else ([], "algorithm")
        secrets = self._all_secrets
        if not secrets:
            return [], "unknown_user"
        stamp = username.split(self.separator, 1)[0]
        if not stamp.isdigit() or len(stamp) > 12:
            return [], "unknown_user"
        if int(stamp) < now:
            return [], "expired"
        rest = self._rest_keys
        keys = rest.get(cache_key)
        if keys is not None:
            rest.move_to_end(cache_key)
            return list(keys), ""
        keys = [long_term_key(username, self.realm, rest_password(secret, username), algorithm)
                for secret in secrets]
        rest[cache_key] = keys
        if len(rest) > self.rest_cache_size:
            rest.popitem(last=False)
        return list(keys), ""


class NonceManager:
    """Issues and checks stateless, expiring, unpredictable nonces.

    :param lifetime_s: a nonce older than this is stale (438).
    :param features: STUN Security Feature bits advertised in the nonce cookie.
    :param key: the HMAC key; a fresh random one per process by default.
    """

    #: the issue time (uint32 seconds: good until 2106) and an 88-bit MAC, 15 bytes, 20 base64 characters
    #: without padding: the whole nonce is 33 bytes, which keeps a 401 small (docs/turn.md, amplification)
    _BODY = struct.Struct("!I")
    _MAC_LEN = 11

    def __init__(self, lifetime_s: float, features: int = 0, key: bytes | None = None) -> None:
        self.lifetime_s = lifetime_s
        self.features = features
        self._key = key if key is not None else os.urandom(32)
        self._prefix = NONCE_COOKIE + base64.b64encode(features.to_bytes(3, "big")).decode("ascii")
        self._prefix_bytes = self._prefix.encode("ascii")

    def _mac(self, stamp: bytes, source_host: str) -> bytes:
        msg = self._prefix_bytes + stamp + source_host.encode()
        return hmac.digest(self._key, msg, "sha256")[: self._MAC_LEN]

    def issue(self, source_host: str, now: float) -> str:
        """A nonce bound to the client's IP address and to ``now``."""
        return self.issue_bytes(source_host, now).decode("ascii")

    def issue_bytes(self, source_host: str, now: float) -> bytes:
        """:meth:`issue` as the bytes of the NONCE attribute."""
        stamp = self._BODY.pack(int(now))
        return self._prefix_bytes + base64.urlsafe_b64encode(stamp + self._mac(stamp, source_host))

    def check(self, nonce: str, source_host: str, now: float) -> bool:
        """True if ``nonce`` is one of ours, for this source, and not stale."""
        try:
            nonce_bytes = nonce.encode("ascii")
        except UnicodeEncodeError:
            return False
        return self.check_bytes(nonce_bytes, source_host, now)

    def check_bytes(self, nonce: bytes, source_host: str, now: float) -> bool:
        """:meth:`check` for the NONCE attribute's raw value (no text round trip).

        The MAC is still compared in constant time; bytes that are not
        base64 make the MAC part short, so they never match.
        """
        prefix = self._prefix_bytes
        if not nonce.startswith(prefix) or len(nonce) != len(prefix) + 20:
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce[len(prefix):])
        except (ValueError, TypeError):
            return False
        stamp, mac = raw[:4], raw[4:]
        if not hmac.compare_digest(mac, self._mac(stamp, source_host)):
            return False
        issued: int = self._BODY.unpack(stamp)[0]
        return issued <= now + 1 and now - issued < self.lifetime_s


class Auth:
    """Who signed a request, and how: its responses are signed the same way."""

    __slots__ = ("username", "key", "sha256")

    def __init__(self, username: str, key: bytes, sha256: bool) -> None:
        self.username = username
        self.key = key
        self.sha256 = sha256


class Refusal:
    """Why a request is not authenticated: the error code, whether it carries a
    challenge (REALM, NONCE, PASSWORD-ALGORITHMS), and the reason counted."""

    __slots__ = ("code", "challenge", "reason")

    def __init__(self, code: ErrorCode, challenge: bool, reason: str) -> None:
        self.code = code
        self.challenge = challenge
        self.reason = reason


#: The password algorithms we offer, in our order of preference (RFC 8489 §18.5).
OUR_ALGORITHMS = (PasswordAlgorithm.MD5, PasswordAlgorithm.SHA256)
#: Our PASSWORD-ALGORITHMS value as sent, to compare with the client's echo byte for byte.
PASSWORD_ALGORITHMS_VALUE = encode_value(AttrType.PASSWORD_ALGORITHMS, tuple((a, b"") for a in OUR_ALGORITHMS), b"")


class Authenticator:
    """The long-term credential mechanism of RFC 8489 §9.2, server side: the one place requests are checked.

    Stateless: a challenge's nonce carries its own time and MAC (see
    :class:`NonceManager`).  Pure: failures are returned, and the engine
    counts them and builds the responses.
    """

    def __init__(self, credentials: CredentialStore, nonces: NonceManager) -> None:
        self.credentials = credentials
        self.nonces = nonces

    def challenge(self, client_host: str, now: float) -> tuple[tuple[int, bytes], ...]:
        """The attributes of a 401/438 (RFC 8489 §9.2.4): REALM, a fresh NONCE, PASSWORD-ALGORITHMS."""
        return (
            (AttrType.REALM, self.credentials.realm.encode("utf-8")),
            (AttrType.NONCE, self.nonces.issue_bytes(client_host, now)),
            (AttrType.PASSWORD_ALGORITHMS, PASSWORD_ALGORITHMS_VALUE),
        )

    def authenticate(self, first: dict[int, Any], data: bytes, client_host: str, now: float) -> Auth | Refusal:
        """Check one request, in the order of RFC 8489 §9.2.4.

        :param first: the request's first value of each attribute type (raw bytes).
        :param data: the request as received (the MAC is over it).
        """
        has_mi = AttrType.MESSAGE_INTEGRITY in first
        has_mi256 = AttrType.MESSAGE_INTEGRITY_SHA256 in first
        # Step 1: no integrity at all -> 401 with REALM and NONCE.
        if not (has_mi or has_mi256):
            return Refusal(ErrorCode.UNAUTHENTICATED, True, "no_credentials")
        username_raw = first.get(AttrType.USERNAME)
        user_hash = first.get(AttrType.USERHASH)
        realm = first.get(AttrType.REALM)
        nonce = first.get(AttrType.NONCE)
        # Step 2: USERNAME or USERHASH, REALM and NONCE must all be there -> else 400.
        if (username_raw is None and user_hash is None) or realm is None or nonce is None:
            return Refusal(ErrorCode.BAD_REQUEST, False, "bad_request")
        # Step 3: with the nonce cookie, PASSWORD-ALGORITHM(S) must agree with our offer -> else 400.
        algorithm = PasswordAlgorithm.MD5
        chosen = first.get(AttrType.PASSWORD_ALGORITHM)
        offered = first.get(AttrType.PASSWORD_ALGORITHMS)
        if chosen is not None or offered is not None:
            if chosen is None or offered is None or offered != PASSWORD_ALGORITHMS_VALUE or len(chosen) < 4:
                return Refusal(ErrorCode.BAD_REQUEST, False, "bad_request")
            value = struct.unpack_from("!H", chosen)[0]
            if value not in OUR_ALGORITHMS:
                return Refusal(ErrorCode.BAD_REQUEST, False, "bad_request")
            algorithm = PasswordAlgorithm(value)
        # Step 4: the nonce must be ours, for this address, and fresh -> else 438; the realm ours -> else 401.
        if not self.nonces.check_bytes(nonce, client_host, now):
            return Refusal(ErrorCode.STALE_NONCE, True, "stale_nonce")
        if realm != self.credentials.realm.encode("utf-8"):
            return Refusal(ErrorCode.UNAUTHENTICATED, True, "wrong_realm")
        # Step 5: find the user (by USERHASH if that is what was sent) -> else 401.
        if user_hash is not None:
            username = self.credentials.username_for_hash(user_hash)
            if username is None:
                return Refusal(ErrorCode.UNAUTHENTICATED, True, "unknown_user")
        else:
            assert username_raw is not None
            try:
                username = username_raw.decode("utf-8")
            except UnicodeDecodeError:
                return Refusal(ErrorCode.UNAUTHENTICATED, True, "unknown_user")
        keys, reason = self.credentials.candidate_keys(username, algorithm, now)
        if not keys:
            return Refusal(ErrorCode.UNAUTHENTICATED, True, reason)
        # Step 6: check the integrity (SHA-256 when sent: it is the stronger) -> else 401.
        verify = verify_integrity_sha256 if has_mi256 else verify_integrity
        for key in keys:
            # None: the attribute is known to be there; the MAC is checked in full.
            if verify(data, None, key):
                return Auth(username, key, has_mi256)
        return Refusal(ErrorCode.UNAUTHENTICATED, True, "bad_integrity")
