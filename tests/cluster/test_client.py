"""The Redis connection against a real ``redis-server``: commands, fail-fast, reconnect after CLIENT KILL and restarts."""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests.signaling.wsclient import async_test
from tests.support import Event, RedisServer, after_each_call
from webrtcstack.cluster.client import BACKOFF_S, RedisClient, RedisUnavailable
from webrtcstack.cluster.resp import RedisError, parse_url


class ClientTests(unittest.TestCase):
    timeout = 60

    def client(self, server: RedisServer, **kwargs: object) -> RedisClient:
        client = RedisClient(parse_url(server.url), reactor, node_id="t", **kwargs)  # type: ignore[arg-type]
        self.addCleanup(client.stop)
        return client

    def went_up(self, client: RedisClient, times: int = 1) -> Event:
        """Fires once the client has come up ``times`` times (counted from now)."""
        box = [0]

        def up() -> None:
            box[0] += 1
            event.check()

        event = Event(lambda: box[0] >= times)
        client.on_up.append(up)
        return event

    @async_test
    async def test_commands_and_errors(self) -> None:
        """Replies come back in order (pipelined); an error reply fails its own Deferred only; the connection is named."""
        server = RedisServer(self)
        client = self.client(server)
        up = self.went_up(client)
        client.start()
        await up.wait(10)
        d1, d2, d3 = client.execute("SET", "k", "v"), client.execute("INCR", "k"), client.execute("GET", "k")
        self.assertEqual(await d1, b"OK")
        with self.assertRaises(RedisError) as e:
            await d2
        self.assertEqual(e.exception.kind, "ERR")
        self.assertEqual(await d3, b"v")
        self.assertEqual(client.round_trips, 3)
        self.assertEqual([c["name"] for c in server.clients("webrtcstack")], ["webrtcstack:t:commands"])

    @async_test
    async def test_client_kill_reconnects(self) -> None:
        """CLIENT KILL drops the connection: on_down runs, commands fail at once meanwhile, and it is re-made by itself (on_up again)."""
        server = RedisServer(self)
        client = self.client(server)
        up = self.went_up(client)
        client.start()
        await up.wait(10)
        down = Event(lambda: not client.up)
        client.on_down.append(down.check)
        again = self.went_up(client)
        self.assertEqual(server.kill_clients("webrtcstack:t:commands"), 1)
        await down.wait(10)
        with self.assertRaises(RedisUnavailable):
            await client.execute("PING")
        await again.wait(10)
        self.assertEqual(await client.execute("PING"), b"PONG")
        self.assertEqual(client.reconnects, 1)

    @async_test
    async def test_command_from_a_lost_reply_does_not_hang(self) -> None:
        """A command sent from the errback of a reply lost with its connection fails at once (it is not written to the dead connection)."""
        server = RedisServer(self)
        client = self.client(server)
        up = self.went_up(client)
        client.start()
        await up.wait(10)
        retried: list[object] = []

        def lost(failure: object) -> object:
            d = client.execute("PING")
            d.addErrback(lambda f: retried.append(f.type))  # type: ignore[attr-defined]
            return d

        blocked = client.execute("BLPOP", "nothing", 0)  # waits in Redis until the connection is killed
        blocked.addErrback(lost)
        await task.deferLater(reactor, 0, lambda: None)
        server.kill_clients("webrtcstack:t:commands")
        await blocked
        self.assertEqual(retried, [RedisUnavailable])

    @async_test
    async def test_redis_absent_at_start(self) -> None:
        """No Redis at start: commands fail at once (nothing hangs), one warning per back-off step; once Redis starts on the port, the client comes up by itself."""
        server = RedisServer(self, start=False)
        warnings: list[str] = []

        def observe(event: dict) -> None:  # type: ignore[type-arg]
            if "cannot reach" in str(event.get("log_format", "")):
                warnings.append(event["error"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        client = self.client(server)
        tried = Event(lambda: len(warnings) >= 3)
        self.addCleanup(after_each_call(client, "_schedule", tried))
        up = self.went_up(client)
        client.start()
        with self.assertRaises(RedisUnavailable):
            await client.execute("PING")
        await tried.wait(10)  # three back-off steps: 0.1 + 0.25 + 0.5 s
        self.assertFalse(client.up)
        self.assertIn("refused", warnings[0].lower())
        server.start()
        await up.wait(10 + BACKOFF_S[-1])
        self.assertEqual(await client.execute("PING"), b"PONG")

    @async_test
    async def test_redis_restart(self) -> None:
        """Redis killed and started again (empty) on its port: the client is down meanwhile, then up by itself."""
        server = RedisServer(self)
        client = self.client(server)
        up = self.went_up(client)
        client.start()
        await up.wait(10)
        await client.execute("SET", "k", "v")
        down = Event(lambda: not client.up)
        client.on_down.append(down.check)
        again = self.went_up(client)
        server.kill()
        await down.wait(10)
        server.start()
        await again.wait(15)
        self.assertIsNone(await client.execute("GET", "k"))  # restarted empty

    @async_test
    async def test_unix_socket_with_password_and_database(self) -> None:
        """unix:///path?db=N with a password in the URL: logged in, on that database."""
        import os
        import tempfile

        folder = tempfile.mkdtemp(prefix="wr-")  # a socket path must be under 108 bytes
        self.addCleanup(__import__("shutil").rmtree, folder, True)
        sock = os.path.join(folder, "redis.sock")
        RedisServer(self, extra=("--unixsocket", sock, "--requirepass", "s3cret"))
        client = RedisClient(parse_url(f"unix://:s3cret@{sock}?db=3"), reactor, node_id="t")
        self.addCleanup(client.stop)
        up = self.went_up(client)
        client.start()
        await up.wait(10)
        await client.execute("SET", "k", "on db 3")
        self.assertEqual(await client.execute("CLIENT", "INFO") is not None, True)
        self.assertIn(b"db=3", await client.execute("CLIENT", "INFO"))
        self.assertEqual(client.url.display(), f"unix://{sock}?db=3")  # no password in logs

    @async_test
    async def test_wrong_password(self) -> None:
        """A password Redis refuses: never up, and the reason is kept for /healthz."""
        server = RedisServer(self)
        server.command("CONFIG", "SET", "requirepass", "right")
        client = self.client(server, password="wrong")
        failed = Event(lambda: "refused the login" in client.last_error or "WRONGPASS" in client.last_error)
        self.addCleanup(after_each_call(client, "_lost", failed))
        client.start()
        await failed.wait(10)
        self.assertFalse(client.up)
