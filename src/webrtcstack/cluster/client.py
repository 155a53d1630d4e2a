"""A Redis connection for the reactor: pipelined commands, reconnect with back-off, fail fast while away.

:class:`RedisClient` keeps one connection.  :meth:`~RedisClient.execute`
sends a command and returns a Deferred of its reply (an error reply fails it
with :class:`~webrtcstack.cluster.resp.RedisError`).  While the connection
is down nothing waits: a command fails at once with :class:`RedisUnavailable`,
and the client reconnects by itself with back-off (one log line a step).  A
connection dropped by Redis (``CLIENT KILL``, a restart) is re-made the same
way; the ``on_up`` callbacks run again after each (re)connection, so the
user re-subscribes or re-asserts what it holds there.

The wire format is :mod:`webrtcstack.cluster.resp`; this module only moves
bytes and keeps time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.logger import Logger

from webrtcstack.cluster.resp import ProtocolError, RedisError, RedisURL, RespParser, encode

__all__ = ["RedisUnavailable", "RedisClient", "BACKOFF_S"]

log = Logger()

#: seconds between connection attempts, step by step (the last repeats)
BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class RedisUnavailable(Exception):
    """Redis is not connected: the command was not sent (or its connection was lost before the reply)."""


class _RedisProtocol(protocol.Protocol):
    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.parser = RespParser()
        self.pending: deque[defer.Deferred] = deque()
        self.lost = False

    def send(self, args: tuple[object, ...]) -> defer.Deferred:
        if self.lost:
            return defer.fail(RedisUnavailable("the connection to Redis was lost"))
        d: defer.Deferred = defer.Deferred()
        self.pending.append(d)
        self.transport.write(encode(*args))
        return d

    def dataReceived(self, data: bytes) -> None:
        try:
            replies = self.parser.feed(data)
        except ProtocolError as e:
            log.error("redis: {url} sent bytes that are not RESP ({error}); reconnecting",
                      url=self.client.url.display(), error=str(e))
            self.transport.abortConnection()
            return
        for reply in replies:
            if not self.pending:
                continue  # a push we did not ask for
            d = self.pending.popleft()
            if isinstance(reply, RedisError):
                d.errback(reply)
            else:
                d.callback(reply)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True
        # The client learns first, so what the errbacks below send waits for the next connection.
        self.client._lost(self, reason)
        pending, self.pending = self.pending, deque()
        for d in pending:
            d.errback(RedisUnavailable("the connection to Redis was lost before the reply"))


class RedisClient:
    """One connection to Redis, kept up by itself (see the module docstring).

    :param url: where Redis is.
    :param reactor: gives ``callLater`` and the endpoints' reactor.
    :param name: this connection's role (shown by ``CLIENT LIST`` as
        ``webrtcstack:<node>:<name>``).
    :param password: used when the URL carries none (``[redis] password_file``).
    :param tls: client TLS options for ``rediss://`` (None: the platform's trust).
    """

    def __init__(self, url: RedisURL, reactor: Any, *, name: str = "commands", node_id: str = "",
                 password: str | None = None, tls: Any = None, connect_timeout_s: float = 5.0) -> None:
        self.url = url
        self.reactor = reactor
        self.name = name
        self.node_id = node_id
        self.password = url.password if url.password is not None else password
        self.tls = tls
        self.connect_timeout_s = connect_timeout_s
        #: callbacks run (with no argument) each time the connection is up and logged in
        self.on_up: list[Callable[[], Any]] = []
        #: callbacks run each time an up connection is lost
        self.on_down: list[Callable[[], Any]] = []
        self._proto: _RedisProtocol | None = None
        self._up = False
        self._stopped = True
        self._step = 0
        self._retry: Any = None
        self._connecting: defer.Deferred | None = None
        #: commands sent (each one round trip, pipelined or not)
        self.round_trips = 0
        #: connections made after the first
        self.reconnects = 0
        self._ever_up = False
        #: why the last attempt failed ("" while up)
        self.last_error = ""

    @property
    def up(self) -> bool:
        """Whether commands can be sent now."""
        return self._up

    def start(self) -> None:
        """Connect (and keep reconnecting until :meth:`stop`)."""
        if not self._stopped:
            return
        self._stopped = False
        self._connect()

    def stop(self) -> defer.Deferred:
        """Stop reconnecting and close the connection; fires when it is closed."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        proto = self._proto
        if proto is None or proto.lost:
            return defer.succeed(None)
        if not self._up:  # still logging in: nobody waits on it
            proto.transport.abortConnection()
            return defer.succeed(None)
        done: defer.Deferred = defer.Deferred()
        self.on_down.append(lambda: done.called or done.callback(None))
        proto.transport.loseConnection()
        return done

    def execute(self, *args: object) -> defer.Deferred:
        """Send one command; a Deferred of its reply.

        Fails at once with :class:`RedisUnavailable` while not connected.
        """
        proto = self._proto
        if not self._up or proto is None:
            return defer.fail(RedisUnavailable(f"Redis at {self.url.display()} is not connected"
                                               + (f" ({self.last_error})" if self.last_error else "")))
        self.round_trips += 1
        return proto.send(args)

    def when_up(self, timeout_s: float) -> defer.Deferred:
        """Fires once the connection is up (at once if it is); fails with :class:`RedisUnavailable` after ``timeout_s``."""
        if self._up:
            return defer.succeed(None)
        if self._stopped:
            return defer.fail(RedisUnavailable(f"the connection to {self.url.display()} is stopped"))
        d: defer.Deferred = defer.Deferred()

        def up() -> None:
            if not d.called:
                d.callback(None)

        def give_up() -> None:
            if not d.called:
                d.errback(RedisUnavailable(f"Redis at {self.url.display()} did not come back within {timeout_s} s"
                                           + (f" ({self.last_error})" if self.last_error else "")))

        timer = self.reactor.callLater(timeout_s, give_up)
        self.on_up.append(up)

        def done(result: Any) -> Any:
            if up in self.on_up:
                self.on_up.remove(up)
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(done)

    # -- internals -----------------------------------------------------------

    def _endpoint(self) -> Any:
        url = self.url
        if url.scheme == "unix":
            return UNIXClientEndpoint(self.reactor, url.path, timeout=self.connect_timeout_s)
        endpoint = HostnameEndpoint(self.reactor, url.host, url.port, timeout=self.connect_timeout_s)
        if url.scheme == "rediss":
            from twisted.internet.ssl import optionsForClientTLS
            endpoint = wrapClientTLS(self.tls or optionsForClientTLS(url.host), endpoint)
        return endpoint

    def _connect(self) -> None:
        self._retry = None
        if self._stopped:
            return
        factory = protocol.Factory.forProtocol(lambda: _RedisProtocol(self))
        d = self._endpoint().connect(factory)
        self._connecting = d
        d.addCallback(self._log_in)
        d.addErrback(self._attempt_failed)

    @defer.inlineCallbacks
    def _log_in(self, proto: _RedisProtocol) -> Any:
        self._connecting = None
        self._proto = proto
        if self.password is not None:
            args: tuple[object, ...] = ("AUTH", self.url.username, self.password) if self.url.username else ("AUTH", self.password)
            yield proto.send(args)
        if self.url.db:
            yield proto.send(("SELECT", self.url.db))
        yield proto.send(("CLIENT", "SETNAME", f"webrtcstack:{self.node_id or 'node'}:{self.name}"))
        if proto.lost or self._stopped:
            return
        self._up = True
        if self._ever_up:
            self.reconnects += 1
        self._ever_up = True
        if self._step or self.last_error:
            log.info("redis: {role} connection to {url} is up", role=self.name, url=self.url.display())
        self._step = 0
        self.last_error = ""
        for callback in list(self.on_up):
            callback()

    def _attempt_failed(self, failure: Any) -> None:
        self._connecting = None
        if failure.check(defer.CancelledError) and self._stopped:
            return
        error = failure.getErrorMessage() or failure.type.__name__
        if failure.check(RedisError):
            error = f"Redis refused the login: {error}"
        if self._proto is not None and not self._proto.lost:
            self._proto.transport.abortConnection()  # a login that failed: _lost schedules the retry
            self.last_error = error
            return
        self._schedule(error)

    def _schedule(self, error: str) -> None:
        if self._stopped or (self._retry is not None and self._retry.active()):
            return
        delay = BACKOFF_S[min(self._step, len(BACKOFF_S) - 1)]
        if self._step < len(BACKOFF_S):  # once a back-off step; the last step repeats silently
            log.warn("redis: cannot reach {url} for the {role} connection ({error}); retrying in {delay} s",
                     url=self.url.display(), role=self.name, error=error, delay=delay)
        self._step += 1
        self.last_error = error
        self._retry = self.reactor.callLater(delay, self._connect)

    def _lost(self, proto: _RedisProtocol, reason: Any = None) -> None:
        if proto is not self._proto:
            return
        was_up = self._up
        self._up = False
        self._proto = None
        if was_up:
            log.warn("redis: the {role} connection to {url} was lost; reconnecting",
                     role=self.name, url=self.url.display())
            for callback in list(self.on_down):
                callback()
        self._schedule(self.last_error or _why_lost(reason))


def _why_lost(reason: Any) -> str:
    """What to log for a lost connection: the TLS failure (a certificate Redis's CA did not sign, …) if it was one."""
    if reason is not None:
        from OpenSSL import SSL

        if reason.check(SSL.Error):
            details = [e[2] for e in (reason.value.args[0] if reason.value.args else ())
                       if isinstance(e, tuple) and len(e) == 3 and e[2]]
            return "TLS handshake failed: " + (", ".join(details) or str(reason.value))
    return "connection lost"


class Script:
    """A Lua script run with EVALSHA, sent whole (EVAL) when Redis does not have it (after a restart)."""

    def __init__(self, text: str) -> None:
        import hashlib

        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    @defer.inlineCallbacks
    def __call__(self, client: RedisClient, keys: tuple[object, ...], args: tuple[object, ...]) -> Any:
        """Run it on ``client``: one round trip (two the first time after Redis lost its script cache)."""
        try:
            reply = yield client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except RedisError as e:
            if e.kind != "NOSCRIPT":
                raise
            reply = yield client.execute("EVAL", self.text, len(keys), *keys, *args)
        return reply
