# -*- test-case-name: tests.integration.test_turn_userdb -*-
"""``[turn] users_db``: TURN users and REST secrets in SQLite or Redis, in coturn's own schemas.

SQLite: coturn's tables (``turnadmin -b FILE`` writes them), so a coturn
``turndb`` can be used as it is, or its rows copied with ``webrtcstack turn-db import``:

* ``turnusers_lt (realm, name, hmackey)``: ``hmackey`` is the hex long-term
  key, MD5(name:realm:password) (32 hex digits; 64 for SHA-256);
* ``turn_secret (realm, value)``: REST API shared secrets (several at once,
  for rotation).

Redis: coturn's keys (``turnadmin -N "host=… dbname=…"`` writes them):
``turn/realm/<realm>/user/<name>/key`` holds the hex key, and the set
``turn/realm/<realm>/secret`` the secrets.

The running stack reads the rows of its realm in a thread (never on the
reactor), at start and every ``users_db_poll_seconds``, and hands them to the
engine's :class:`~webrtcstack.turn.auth.CredentialStore` when they changed:
a user added or deleted with ``webrtcstack turn-user`` takes effect within
that interval, with no reload.  If the file cannot be read, the last rows
read stay in use and one warning says why (again only when the reason changes).
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from twisted.application import service
from twisted.internet import task, threads
from twisted.logger import Logger

__all__ = ["UserDb", "RedisUserDb", "UserDbService", "SCHEMA", "long_term_key_hex", "open_user_db",
           "UserDbError"]

log = Logger()

#: coturn's two tables (the rest of its schema is not used, and left alone if present)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS turnusers_lt (realm varchar(127) default '', name varchar(512), "
    "hmackey char(128), PRIMARY KEY (realm,name))",
    "CREATE TABLE IF NOT EXISTS turn_secret (realm varchar(127) default '', value varchar(127), "
    "primary key (realm,value))",
)


def long_term_key_hex(name: str, realm: str, password: str) -> str:
    """The key ``turnadmin -a`` stores: hex MD5 of ``name:realm:password`` (RFC 8489 §9.2.2)."""
    return hashlib.md5(f"{name}:{realm}:{password}".encode()).hexdigest()


class UserDbError(Exception):
    """The users database cannot be read or written; the text says which and why."""


def open_user_db(url: str, cluster_url: str = "", ca_file: str = "") -> Any:
    """The database ``[turn] users_db`` names: ``sqlite:///path``, ``redis://…``/``rediss://…``/``unix://…``,
    or ``redis`` (the ``[redis] url`` of the cluster, ``cluster_url``).

    :param ca_file: for ``rediss://``, the PEM CA file that signs Redis's certificate (``[redis] ca_file``);
        empty: the system's trusted CAs.
    """
    if url.startswith("sqlite:///"):
        return UserDb(url[len("sqlite://"):])
    if url == "redis":
        if not cluster_url:
            raise UserDbError("users_db = redis names [redis] url, which is empty")
        url = cluster_url
    return RedisUserDb(url, ca_file)


class UserDb:
    """One SQLite file in coturn's schema.  Each call opens and closes its own connection
    (calls come from a thread pool, and from the command line)."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: what logs and errors name
        self.where = path

    def _connect(self, write: bool) -> sqlite3.Connection:
        if write:
            connection = sqlite3.connect(self.path, timeout=10)
            for statement in SCHEMA:
                connection.execute(statement)
            return connection
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)

    def read(self, realm: str) -> tuple[dict[str, bytes], tuple[str, ...]]:
        """The users (name -> key) and secrets of ``realm``.

        :raises sqlite3.Error: the file is missing, not a database, or lacks the tables.
        """
        connection = self._connect(write=False)
        try:
            users: dict[str, bytes] = {}
            for name, key in connection.execute("SELECT name, hmackey FROM turnusers_lt WHERE realm = ?", (realm,)):
                try:
                    raw = bytes.fromhex(str(key).strip())
                except ValueError:
                    continue  # a damaged row is skipped, not fatal
                if len(raw) in (16, 32):
                    users[str(name)] = raw
            secrets = tuple(str(v) for (v,) in connection.execute(
                "SELECT value FROM turn_secret WHERE realm = ? ORDER BY value", (realm,)))
            return users, secrets
        finally:
            connection.close()

    def add_user(self, realm: str, name: str, password: str) -> None:
        with self._connect(write=True) as connection:
            connection.execute("INSERT OR REPLACE INTO turnusers_lt (realm, name, hmackey) VALUES (?, ?, ?)",
                               (realm, name, long_term_key_hex(name, realm, password)))

    def delete_user(self, realm: str, name: str) -> bool:
        with self._connect(write=True) as connection:
            return connection.execute("DELETE FROM turnusers_lt WHERE realm = ? AND name = ?",
                                      (realm, name)).rowcount > 0

    def users(self, realm: str | None = None) -> list[tuple[str, str]]:
        """``(realm, name)`` of every user (of ``realm`` only, if given)."""
        with self._connect(write=True) as connection:
            query = "SELECT realm, name FROM turnusers_lt" + (" WHERE realm = ?" if realm is not None else "")
            return [(str(r), str(n)) for r, n in connection.execute(query + " ORDER BY realm, name",
                                                                     (realm,) if realm is not None else ())]

    def add_secret(self, realm: str, value: str) -> None:
        with self._connect(write=True) as connection:
            connection.execute("INSERT OR IGNORE INTO turn_secret (realm, value) VALUES (?, ?)", (realm, value))

    def delete_secret(self, realm: str, value: str) -> bool:
        with self._connect(write=True) as connection:
            return connection.execute("DELETE FROM turn_secret WHERE realm = ? AND value = ?",
                                      (realm, value)).rowcount > 0

    def secrets(self, realm: str | None = None) -> list[tuple[str, str]]:
        with self._connect(write=True) as connection:
            query = "SELECT realm, value FROM turn_secret" + (" WHERE realm = ?" if realm is not None else "")
            return [(str(r), str(v)) for r, v in connection.execute(query + " ORDER BY realm, value",
                                                                     (realm,) if realm is not None else ())]

    def import_turndb(self, source: str) -> tuple[int, int]:
        """Copy the users and secrets of a coturn SQLite ``turndb`` (every realm); returns the counts."""
        other = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=10)
        try:
            users = list(other.execute("SELECT realm, name, hmackey FROM turnusers_lt"))
            secrets = list(other.execute("SELECT realm, value FROM turn_secret"))
        finally:
            other.close()
        with self._connect(write=True) as connection:
            connection.executemany("INSERT OR REPLACE INTO turnusers_lt (realm, name, hmackey) VALUES (?, ?, ?)",
                                   users)
            connection.executemany("INSERT OR IGNORE INTO turn_secret (realm, value) VALUES (?, ?)", secrets)
        return len(users), len(secrets)


def _sqlite_errors(cls: type) -> type:
    """Every public method of ``cls`` raises :class:`UserDbError` for an ``sqlite3.Error``."""
    import functools

    for name in ("read", "add_user", "delete_user", "users", "add_secret", "delete_secret", "secrets",
                 "import_turndb"):
        method = getattr(cls, name)

        @functools.wraps(method)
        def wrapped(self: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            try:
                return _method(self, *args, **kwargs)
            except sqlite3.Error as e:
                raise UserDbError(f"{self.where}: {e}") from None

        setattr(cls, name, wrapped)
    return cls


_sqlite_errors(UserDb)


class RedisUserDb:
    """coturn's Redis keys, through a short-lived blocking connection per call (from a thread, or the CLI)."""

    def __init__(self, url: str, ca_file: str = "") -> None:
        from webrtcstack.cluster.resp import parse_url

        self.url = parse_url(url)
        self.ca_file = ca_file
        self.where = self.url.display()

    def _call(self, sock: Any, parser: Any, *args: object) -> Any:
        from webrtcstack.cluster.resp import RedisError, encode

        sock.sendall(encode(*args))
        while True:
            replies = parser.feed(b"")
            if not replies:
                data = sock.recv(1 << 16)
                if not data:
                    raise UserDbError(f"{self.where}: the connection closed")
                replies = parser.feed(data)
            if replies:
                reply = replies[0]
                if isinstance(reply, RedisError):
                    raise UserDbError(f"{self.where}: {reply}")
                return reply

    def _session(self) -> Any:
        import contextlib
        import socket

        from webrtcstack.cluster.resp import ProtocolError, RespParser

        url = self.where
        db = self

        @contextlib.contextmanager
        def session() -> Any:
            try:
                if db.url.scheme == "unix":
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(10)
                    sock.connect(db.url.path)
                else:
                    sock = socket.create_connection((db.url.host, db.url.port), timeout=10)
                    if db.url.scheme == "rediss":
                        import ssl

                        context = ssl.create_default_context(cafile=db.ca_file or None)
                        sock = context.wrap_socket(sock, server_hostname=db.url.host)
            except OSError as e:  # ssl.SSLError (a certificate not trusted, ...) is an OSError too
                raise UserDbError(f"{url}: {e.strerror or e}") from None
            parser = RespParser()
            try:
                if db.url.password is not None:
                    auth = (db.url.username, db.url.password) if db.url.username else (db.url.password,)
                    db._call(sock, parser, "AUTH", *auth)
                if db.url.db:
                    db._call(sock, parser, "SELECT", db.url.db)
                yield lambda *args: db._call(sock, parser, *args)
            except (OSError, ProtocolError) as e:
                raise UserDbError(f"{url}: {e}") from None
            finally:
                sock.close()

        return session()

    @staticmethod
    def _scan(call: Any, pattern: str) -> list[bytes]:
        keys: list[bytes] = []
        cursor = b"0"
        for _ in range(1_000_000):
            cursor, batch = call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            keys += batch
            if cursor == b"0":
                break
        return keys

    @staticmethod
    def _glob(text: str) -> str:
        return "".join("\\" + c if c in "*?[]\\" else c for c in text)

    def read(self, realm: str) -> tuple[dict[str, bytes], tuple[str, ...]]:
        prefix = f"turn/realm/{realm}/user/"
        with self._session() as call:
            keys = self._scan(call, self._glob(prefix) + "*/key")
            values = call("MGET", *keys) if keys else []
            secrets = call("SMEMBERS", f"turn/realm/{realm}/secret")
        users: dict[str, bytes] = {}
        for key, value in zip(keys, values):
            name = key.decode("utf-8", "replace")[len(prefix):-len("/key")]
            try:
                raw = bytes.fromhex((value or b"").decode("ascii", "replace").strip())
            except ValueError:
                continue
            if name and len(raw) in (16, 32):
                users[name] = raw
        return users, tuple(sorted(v.decode("utf-8", "replace") for v in secrets))

    def add_user(self, realm: str, name: str, password: str) -> None:
        with self._session() as call:
            call("SET", f"turn/realm/{realm}/user/{name}/key", long_term_key_hex(name, realm, password))

    def delete_user(self, realm: str, name: str) -> bool:
        with self._session() as call:
            return bool(call("DEL", f"turn/realm/{realm}/user/{name}/key"))

    def users(self, realm: str | None = None) -> list[tuple[str, str]]:
        pattern = f"turn/realm/{self._glob(realm)}/user/*/key" if realm is not None else "turn/realm/*/user/*/key"
        with self._session() as call:
            keys = self._scan(call, pattern)
        rows = []
        for key in keys:
            parts = key.decode("utf-8", "replace").split("/")
            if len(parts) >= 6:
                rows.append((parts[2], "/".join(parts[4:-1])))
        return sorted(rows)

    def add_secret(self, realm: str, value: str) -> None:
        with self._session() as call:
            call("SADD", f"turn/realm/{realm}/secret", value)

    def delete_secret(self, realm: str, value: str) -> bool:
        with self._session() as call:
            return bool(call("SREM", f"turn/realm/{realm}/secret", value))

    def secrets(self, realm: str | None = None) -> list[tuple[str, str]]:
        with self._session() as call:
            if realm is not None:
                return [(realm, v.decode()) for v in sorted(call("SMEMBERS", f"turn/realm/{realm}/secret"))]
            rows = []
            for key in self._scan(call, "turn/realm/*/secret"):
                realm_name = key.decode().split("/")[2]
                rows += [(realm_name, v.decode()) for v in sorted(call("SMEMBERS", key))]
            return rows

    def import_turndb(self, source: str) -> tuple[int, int]:
        """Copy a coturn SQLite ``turndb``'s users and secrets into Redis (coturn's keys)."""
        try:
            other = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=10)
            try:
                users = list(other.execute("SELECT realm, name, hmackey FROM turnusers_lt"))
                secrets = list(other.execute("SELECT realm, value FROM turn_secret"))
            finally:
                other.close()
        except sqlite3.Error as e:
            raise UserDbError(f"{source}: {e}") from None
        with self._session() as call:
            for realm, name, key in users:
                call("SET", f"turn/realm/{realm}/user/{name}/key", key)
            for realm, value in secrets:
                call("SADD", f"turn/realm/{realm}/secret", value)
        return len(users), len(secrets)


class UserDbService(service.Service):
    """Keeps the engine's credential store equal to the database's rows for its realm."""

    def __init__(self, db: Any, credentials: Any, reactor: Any, interval_s: float, counters: Any = None) -> None:
        self.setName("turn users db")
        #: the engine's counters (the loaded counts go to /metrics)
        self.counters = counters
        self.db = db
        self.credentials = credentials
        self.reactor = reactor
        self.interval_s = interval_s
        self._loop: task.LoopingCall | None = None
        self._last: tuple[dict[str, bytes], tuple[str, ...]] | None = None
        self._last_error: str | None = None
        #: reads that changed the store (tests wait on it)
        self.loads = 0

    def preflight(self) -> None:
        """The first read, before anything binds (a blocking read is fine before the reactor runs)."""
        if self._last is None:
            self._apply(self._read_now())

    def _read_now(self) -> tuple[dict[str, bytes], tuple[str, ...]] | str:
        try:
            return self.db.read(self.credentials.realm)  # type: ignore[no-any-return]
        except UserDbError as e:
            return str(e)

    def _apply(self, result: tuple[dict[str, bytes], tuple[str, ...]] | str) -> None:
        if isinstance(result, str):
            if result != self._last_error:
                self._last_error = result
                log.warn("TURN users_db unreadable ({error}); the users and secrets read before stay in use",
                         error=result)
            return
        if self._last_error is not None:
            log.info("TURN users_db readable again: {where}", where=self.db.where)
            self._last_error = None
        if result != self._last:
            self._last = result
            self.credentials.set_database(*result)
            self.loads += 1
            if self.counters is not None:
                self.counters.users_db_users, self.counters.users_db_secrets = len(result[0]), len(result[1])
            log.info("TURN users_db: {users} users, {secrets} REST secrets for realm {realm}",
                     users=len(result[0]), secrets=len(result[1]), realm=self.credentials.realm)

    def poll(self) -> Any:
        """Read in a thread, apply on the reactor."""
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._read_now)
        d.addCallback(self._apply)
        return d

    def startService(self) -> None:
        self.preflight()
        service.Service.startService(self)
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self.reactor
        self._loop.start(self.interval_s, now=False)

    def stopService(self) -> Any:
        service.Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

