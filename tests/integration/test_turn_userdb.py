"""``[turn] users_db`` with coturn's tools: turnadmin's own turndb imported, users changed live.

The stack runs in process on loopback; users and secrets are changed with the
``webrtcstack turn-user`` / ``turn-secret`` / ``turn-db`` commands (real
processes) while it runs, and coturn's ``turnutils_uclient`` checks each
change from the outside.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.internet import defer, error, protocol, reactor, utils
from twisted.trial import unittest

from tests.integration.test_turn_uclient import LOST, SENT
from tests.support import Event, RedisServer, after_each_call, free_port, need_tool
from tests.turn.stack import REALM, TurnStack


class _Ended(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class UsersDbTests(unittest.TestCase):
    timeout = 90

    def setUp(self) -> Any:
        self.uclient = need_tool("turnutils_uclient")
        peer = need_tool("turnutils_peer")
        self.db = os.path.abspath(self.mktemp()) + ".db"
        self.peer_port = free_port()
        self.peer = _Ended()
        self.peer_process = reactor.spawnProcess(self.peer, peer, [peer, "-L", "127.0.0.1", "-p", str(self.peer_port)],
                                                 env=None)
        self.addCleanup(self._stop_peer)

    def _stop_peer(self) -> Any:
        try:
            self.peer_process.signalProcess(signal.SIGKILL)
        except error.ProcessExitedAlready:
            pass
        return self.peer.ended

    #: the users_db URL (the Redis tests set a redis:// one)
    url = ""

    def start(self) -> TurnStack:
        stack = TurnStack(extra=f"users_db = {self.url or 'sqlite://' + self.db}\nusers_db_poll_seconds = 1\n")
        stack.start()
        self.addCleanup(stack.stop)
        self.store = stack.engine.credentials
        return stack

    @defer.inlineCallbacks
    def cli(self, *args: str) -> Any:
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "webrtcstack.cli", *args, "--db", self.url or f"sqlite://{self.db}", "--realm", REALM],
            env=dict(os.environ))
        self.assertEqual(code, 0, (out + err).decode(errors="replace"))
        defer.returnValue(out.decode())

    @defer.inlineCallbacks
    def relay(self, stack: TurnStack, *credentials: str) -> Any:
        """uclient through the stack with these credentials (-n 10 -m 1: 20 messages): (sent, received), or
        None when refused."""
        args = [*credentials, "-e", "127.0.0.1", "-r", str(self.peer_port), "-n", "10", "-m", "1", "-l", "100",
                "-z", "5", "-p", str(stack.port), "127.0.0.1"]
        out, err, code = yield utils.getProcessOutputAndValue(self.uclient, args, env={})
        text = out + err
        totals = SENT.findall(text)
        lost = LOST.search(text)
        if code != 0 or not totals or lost is None:
            defer.returnValue(None)
        defer.returnValue((int(totals[-1][0]), int(totals[-1][1])))

    def loaded(self, users: int, secrets: int) -> Event:
        """Fires once the stack has loaded a database with these counts (woken by each load)."""
        event = Event(lambda: self.store.database_counts() == (users, secrets))
        self.addCleanup(after_each_call(self.store, "set_database", event))
        return event

    @defer.inlineCallbacks
    def test_users_added_and_deleted_while_running(self) -> Any:
        yield self.cli("turn-user", "add", "dbuser", "--password", "db-password")
        stack = self.start()
        self.assertEqual(self.store.database_counts(), (1, 0))
        self.assertEqual((stack.engine.counters.users_db_users, stack.engine.counters.users_db_secrets), (1, 0))
        self.assertEqual((yield self.relay(stack, "-u", "dbuser", "-w", "db-password")), (20, 20))
        self.assertIsNone((yield self.relay(stack, "-u", "dbuser", "-w", "wrong")))
        # a new user, live: it works once the stack has read the change (no reload)
        change = self.loaded(2, 0)
        yield self.cli("turn-user", "add", "newuser", "--password", "new-password")
        yield change.wait(10)
        self.assertEqual((yield self.relay(stack, "-u", "newuser", "-w", "new-password")), (20, 20))
        # deleted, live: refused from then on
        change = self.loaded(1, 0)
        yield self.cli("turn-user", "delete", "dbuser")
        yield change.wait(10)
        self.assertIsNone((yield self.relay(stack, "-u", "dbuser", "-w", "db-password")))
        listed = yield self.cli("turn-user", "list")
        self.assertEqual(listed.split(), ["newuser"])

    @defer.inlineCallbacks
    def test_rest_secrets_rotate_live(self) -> Any:
        yield self.cli("turn-secret", "add", "db-secret-1")
        stack = self.start()
        self.assertEqual((yield self.relay(stack, "-W", "db-secret-1", "-u", "carol")), (20, 20))
        change = self.loaded(0, 2)
        yield self.cli("turn-secret", "add", "db-secret-2")
        yield change.wait(10)
        change = self.loaded(0, 1)
        yield self.cli("turn-secret", "delete", "db-secret-1")
        yield change.wait(10)
        self.assertEqual((yield self.relay(stack, "-W", "db-secret-2", "-u", "carol")), (20, 20))
        self.assertIsNone((yield self.relay(stack, "-W", "db-secret-1", "-u", "carol")))

    @defer.inlineCallbacks
    def test_coturn_turndb_imported_with_one_command(self) -> Any:
        """A turndb written by coturn's own turnadmin: its user and its secret work after `turn-db import`."""
        turnadmin = need_tool("turnadmin")
        turndb = os.path.abspath(self.mktemp())
        for args in (["-a", "-b", turndb, "-u", "coturnuser", "-r", REALM, "-p", "coturn-password"],
                     ["-s", "coturn-secret", "-b", turndb, "-r", REALM]):
            out, err, code = yield utils.getProcessOutputAndValue(turnadmin, args, env={})
            self.assertEqual(code, 0, (out + err).decode(errors="replace"))
        imported = yield self.cli("turn-db", "import", turndb)
        self.assertIn("imported 1 users and 1 REST secrets", imported)
        stack = self.start()
        self.assertEqual((yield self.relay(stack, "-u", "coturnuser", "-w", "coturn-password")), (20, 20))
        self.assertEqual((yield self.relay(stack, "-W", "coturn-secret", "-u", "dave")), (20, 20))

    @defer.inlineCallbacks
    def test_a_coturn_turndb_works_as_it_is(self) -> Any:
        """users_db may name coturn's turndb itself (same tables)."""
        turnadmin = need_tool("turnadmin")
        self.db = os.path.abspath(self.mktemp())
        out, err, code = yield utils.getProcessOutputAndValue(
            turnadmin, ["-a", "-b", self.db, "-u", "coturnuser", "-r", REALM, "-p", "coturn-password"], env={})
        self.assertEqual(code, 0, (out + err).decode(errors="replace"))
        stack = self.start()
        self.assertEqual((yield self.relay(stack, "-u", "coturnuser", "-w", "coturn-password")), (20, 20))


class RedisUsersDbTests(UsersDbTests):
    """The same cycle on coturn's Redis keys (``turnadmin -N``), in a redis-server this test starts."""

    def setUp(self) -> Any:
        self.redis = RedisServer(self)
        self.url = self.redis.url
        return super().setUp()

    def test_a_coturn_turndb_works_as_it_is(self) -> Any:
        """turnadmin writing straight into Redis (coturn's keys): the stack reads its user and secret."""
        return self._turnadmin_redis()

    @defer.inlineCallbacks
    def _turnadmin_redis(self) -> Any:
        turnadmin = need_tool("turnadmin")
        where = f"host=127.0.0.1 port={self.redis.port} dbname=0"
        for args in (["-a", "-N", where, "-u", "coturnuser", "-r", REALM, "-p", "coturn-password"],
                     ["-s", "coturn-secret", "-N", where, "-r", REALM]):
            out, err, code = yield utils.getProcessOutputAndValue(turnadmin, args, env={})
            self.assertEqual(code, 0, (out + err).decode(errors="replace"))
        stack = self.start()
        self.assertEqual(self.store.database_counts(), (1, 1))
        self.assertEqual((yield self.relay(stack, "-u", "coturnuser", "-w", "coturn-password")), (20, 20))
        self.assertEqual((yield self.relay(stack, "-W", "coturn-secret", "-u", "erin")), (20, 20))


class RedisTlsUsersDbTests(RedisUsersDbTests):
    """rediss:// (TLS): the stack trusts Redis's certificate through [redis] ca_file, the commands through
    --ca-file; without the CA the command fails with one line, no traceback."""

    def setUp(self) -> Any:
        import socket as _socket

        from tests.ops.support import make_cert

        cert, key, _ = make_cert(self, ("localhost", "127.0.0.1"))
        self.ca = cert
        tls_port = free_port(_socket.SOCK_STREAM)
        self.redis = RedisServer(self, extra=("--tls-port", str(tls_port), "--tls-cert-file", cert,
                                              "--tls-key-file", key, "--tls-auth-clients", "no"))
        self.url = f"rediss://localhost:{tls_port}/0"
        return UsersDbTests.setUp(self)  # not RedisUsersDbTests's: this class starts its own (TLS) server

    def start(self) -> TurnStack:
        stack = TurnStack(extra=f"users_db = {self.url}\nusers_db_poll_seconds = 1\n[redis]\nca_file = {self.ca}\n")
        stack.start()
        self.addCleanup(stack.stop)
        self.store = stack.engine.credentials
        return stack

    @defer.inlineCallbacks
    def cli(self, *args: str) -> Any:
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "webrtcstack.cli", *args, "--db", self.url, "--realm", REALM, "--ca-file", self.ca],
            env=dict(os.environ))
        self.assertEqual(code, 0, (out + err).decode(errors="replace"))
        defer.returnValue(out.decode())

    @defer.inlineCallbacks
    def test_without_the_ca_the_command_says_why(self) -> Any:
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "webrtcstack.cli", "turn-user", "list", "--db", self.url, "--realm", REALM],
            env=dict(os.environ))
        self.assertEqual(code, 2)
        self.assertIn(b"certificate verify failed", err)
        self.assertNotIn(b"Traceback", out + err)

    # test_a_coturn_turndb_works_as_it_is (inherited): turnadmin writes through the server's plain port,
    # and the stack reads the same keys over TLS


class UsersDbConfigTests(unittest.TestCase):
    def test_urls(self) -> None:
        from webrtcstack.config import ConfigError, parse_config

        for value in ("sqlite:///var/lib/webrtcstack/turndb", "redis://127.0.0.1:6379/2", "unix:///run/redis.sock",
                      "rediss://redis.example:6380/0"):
            self.assertEqual(parse_config(f"[turn]\nusers_db = {value}\n", "ok.ini").turn.users_db, value)
        for value, why in (("sqlite://relative", "expected sqlite:///absolute/path"),
                           ("redis", "names the [redis] url, which is empty")):
            with self.assertRaises(ConfigError) as caught:
                parse_config(f"[turn]\nusers_db = {value}\n", "bad.ini")
            self.assertIn("users_db", str(caught.exception))
            self.assertIn(why, str(caught.exception))
