# -*- test-case-name: tests.integration.test_turn_workers -*-
"""``[turn] workers``: TURN worker processes on ``SO_REUSEPORT`` sockets (shell code).

With ``workers = N > 1`` the main process serves TURN shard 0 (and HTTP,
signaling and metrics) and :class:`TurnWorkersService` runs shards 1..N-1,
each a ``python -m webrtcstack.turn.adapters.worker`` child that re-reads
and validates the same config file and binds every ``[turn] listen`` UDP and
TCP socket with ``SO_REUSEPORT``.  The kernel picks the process by a hash of
each client's 4-tuple, so a client's packets always reach the same process
and its allocation lives there.  TURN over TLS stays in the main process.

The parent talks to a child over three pipes:

- stdin: one JSON line at start with what must be the same in every process
  (the nonce key, and the REST secrets when they were generated at start);
  the parent keeps the pipe open.
- stdout: one JSON line per :data:`REPORT_INTERVAL_S` with the child's TURN
  counters (:func:`counters_snapshot`), summed into ``/metrics`` here.
- stderr: the parent's own, so the child's log lines go where ours go.

Lifecycle: SIGHUP is forwarded (the child re-reads the file), draining sends
SIGTERM (the child drains like the main process and exits), stopping waits
for every child to exit (``drain_seconds`` + :data:`EXIT_GRACE_S`, then
SIGKILL).  A child dies with the parent (``PR_SET_PDEATHSIG``).  A child that
exits on its own is logged and not restarted; the kernel then hands its
share of clients to the remaining sockets.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.logger import Logger

from webrtcstack.config import StackConfig
from webrtcstack.turn.allocation import TurnCounters

__all__ = ["TurnWorkersService", "WorkerProtocol", "counters_snapshot", "apply_snapshot", "check_workers_config"]

log = Logger()
#: How often a child reports its counters.
REPORT_INTERVAL_S = 1.0
#: How long past ``drain_seconds`` the parent waits for a child to exit before SIGKILL.
EXIT_GRACE_S = 5.0
_DICTS = ("allocations_active", "allocations_total", "requests", "auth_failures", "quota_hits", "dropped")
_NUMBERS = ("packets_to_peer", "bytes_to_peer", "packets_to_client", "bytes_to_client", "permissions_active",
            "channels_active", "peers_denied")


def counters_snapshot(counters: Any) -> dict[str, Any]:
    """The counters as JSON-ready values (dict keys as lists of ``[key, value]``)."""
    out: dict[str, Any] = {name: int(getattr(counters, name)) for name in _NUMBERS}
    for name in _DICTS:
        out[name] = [[list(k) if isinstance(k, tuple) else k, v] for k, v in getattr(counters, name).items()]
    return out


def apply_snapshot(counters: Any, snapshot: dict[str, Any]) -> None:
    """Set ``counters`` to the values of a :func:`counters_snapshot` (the inverse)."""
    for name in _NUMBERS:
        setattr(counters, name, int(snapshot.get(name, 0)))
    for name in _DICTS:
        setattr(counters, name, {tuple(k) if isinstance(k, list) else k: int(v) for k, v in snapshot.get(name, ())})


def check_workers_config(config: StackConfig) -> None:
    """Refuse a ``workers > 1`` config the children could not reproduce.

    :raises ValueError: no config file to re-read.  (A ``listen`` port 0, which
        each process would bind differently, is already refused by the config parser.)
    """
    if config.turn.workers <= 1:
        return
    if config.filename.startswith("<"):
        raise ValueError("[turn] workers > 1 needs a config file (the workers read it)")


class WorkerProtocol(protocol.ProcessProtocol):
    """The parent's end of one worker: reads its counter reports, notices its exit."""

    def __init__(self, index: int, hello: bytes) -> None:
        self.index = index
        self.hello = hello
        self.counters = TurnCounters()
        self.reports = 0
        self.pid: int | None = None
        self.exited = False
        self.signalled_term = False
        self.stopping = False
        self._buffer = b""
        self._ended: list[defer.Deferred[None]] = []

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.pid = transport.pid
        transport.write(self.hello)  # one line; stdin stays open

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                snapshot = json.loads(line)
                apply_snapshot(self.counters, snapshot)
            except (ValueError, TypeError, AttributeError):
                log.warn("TURN worker {index}: unreadable report {line!r}", index=self.index, line=line[:200])
                continue
            self.reports += 1
        if len(self._buffer) > 1 << 20:
            self._buffer = b""

    def busy(self) -> int:
        """Allocations the worker reported last (0 once it has exited)."""
        return 0 if self.exited else sum(self.counters.allocations_active.values())

    def signal(self, signum: int) -> None:
        """Send ``signum`` if the worker is still running."""
        if self.exited or self.transport is None:
            return
        transport: Any = self.transport
        try:
            transport.signalProcess(signum)
        except error.ProcessExitedAlready:
            pass

    def terminate(self) -> None:
        """SIGTERM once: the worker drains and exits."""
        if not self.signalled_term:
            self.signalled_term = True
            self.signal(signal.SIGTERM)

    def processEnded(self, reason: Any) -> None:
        self.exited = True
        self.counters.allocations_active = {}
        self.counters.permissions_active = self.counters.channels_active = 0
        if not self.stopping and not self.signalled_term:
            log.error("TURN worker {index} (pid {pid}) exited: {reason}", index=self.index, pid=self.pid,
                      reason=reason.getErrorMessage())
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(None)

    def when_ended(self) -> defer.Deferred[None]:
        """Fires once the process has exited."""
        if self.exited:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._ended.append(d)
        return d


class TurnWorkersService(service.Service):
    """Runs TURN shards 1..N-1 as child processes (see the module docstring).

    Start it after the main process's TURN listeners, so a bind error there
    stops the start before any child is spawned.

    :param hello: what every child reads first (``nonce_key`` in hex and
        ``auth_secrets``).
    """

    def __init__(self, config: StackConfig, reactor: Any, *, nonce_key: bytes, auth_secrets: tuple[str, ...],
                 executable: str = sys.executable) -> None:
        self.config = config
        self.reactor = reactor
        self.executable = executable
        self.setName("turn workers")
        hello = json.dumps({"nonce_key": nonce_key.hex(), "auth_secrets": list(auth_secrets)}).encode() + b"\n"
        self.workers = [WorkerProtocol(i, hello) for i in range(1, config.turn.workers)]

    def startService(self) -> None:
        service.Service.startService(self)
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        count = self.config.turn.workers
        for worker in self.workers:
            args = [self.executable, "-m", "webrtcstack.turn.adapters.worker", "--config",
                    os.path.abspath(self.config.filename), "--shard", str(worker.index), "--shards", str(count),
                    "--parent", str(os.getpid())]
            self.reactor.spawnProcess(worker, self.executable, args, env=env, childFDs={0: "w", 1: "r", 2: 2})
            log.info("TURN worker {index} of {count} started, pid {pid}", index=worker.index, count=count,
                     pid=worker.pid)

    def busy(self) -> int:
        """Allocations in every worker, as last reported."""
        return sum(w.busy() for w in self.workers)

    def drain(self) -> None:
        """SIGTERM every worker: each drains (refuses new allocations, waits for the old) and exits."""
        for worker in self.workers:
            worker.terminate()

    def reload(self, config: StackConfig) -> None:
        """Forward a reload: each worker re-reads the config file (SIGHUP)."""
        for worker in self.workers:
            worker.signal(signal.SIGHUP)

    def stopService(self) -> defer.Deferred[None]:
        service.Service.stopService(self)
        for worker in self.workers:
            worker.stopping = True
            worker.terminate()
        ended = defer.gatherResults([w.when_ended() for w in self.workers])
        limit = self.config.stack.drain_seconds + EXIT_GRACE_S

        def kill() -> None:
            for worker in self.workers:
                if not worker.exited:
                    log.warn("TURN worker {index} (pid {pid}) still running after {limit}s; SIGKILL",
                             index=worker.index, pid=worker.pid, limit=limit)
                    worker.signal(signal.SIGKILL)

        timer = self.reactor.callLater(limit, kill)

        def done(_: object) -> None:
            if timer.active():
                timer.cancel()

        return ended.addCallback(done)
