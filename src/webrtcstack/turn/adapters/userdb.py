# -*- test-case-name: tests.integration.test_turn_userdb -*-
"""``[turn] users_db``: TURN users and REST secrets in an SQLite file, in coturn's own schema.

The tables are coturn's (``turnadmin -b FILE`` writes them), so a coturn
``turndb`` can be used as it is, or its rows copied into ours with
``webrtcstack turn-db import``:

* ``turnusers_lt (realm, name, hmackey)``: ``hmackey`` is the hex long-term
  key, MD5(name:realm:password) (32 hex digits; 64 for SHA-256);
* ``turn_secret (realm, value)``: REST API shared secrets (several at once,
  for rotation).

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
from collections.abc import Iterable
from typing import Any

from twisted.application import service
from twisted.internet import task, threads
from twisted.logger import Logger

__all__ = ["UserDb", "UserDbService", "SCHEMA", "long_term_key_hex"]

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


class UserDb:
    """One SQLite file in coturn's schema.  Each call opens and closes its own connection
    (calls come from a thread pool, and from the command line)."""

    def __init__(self, path: str) -> None:
        self.path = path

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


class UserDbService(service.Service):
    """Keeps the engine's credential store equal to the database's rows for its realm."""

    def __init__(self, db: UserDb, credentials: Any, reactor: Any, interval_s: float) -> None:
        self.setName("turn users db")
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
            return self.db.read(self.credentials.realm)
        except sqlite3.Error as e:
            return f"{self.db.path}: {e}"

    def _apply(self, result: tuple[dict[str, bytes], tuple[str, ...]] | str) -> None:
        if isinstance(result, str):
            if result != self._last_error:
                self._last_error = result
                log.warn("TURN users_db unreadable ({error}); the users and secrets read before stay in use",
                         error=result)
            return
        if self._last_error is not None:
            log.info("TURN users_db readable again: {path}", path=self.db.path)
            self._last_error = None
        if result != self._last:
            self._last = result
            self.credentials.set_database(*result)
            self.loads += 1
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


def describe(rows: Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"{realm}\t{name}" for realm, name in rows)
