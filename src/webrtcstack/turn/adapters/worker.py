"""One TURN worker process: ``python -m webrtcstack.turn.adapters.worker`` (shell code).

Started by :class:`webrtcstack.turn.adapters.workers.TurnWorkersService`,
never by hand.  It re-reads and validates the config file, reads one JSON
line from stdin (the shared nonce key and REST secrets), serves the
``[turn] listen`` sockets (``SO_REUSEPORT``) as shard ``--shard`` of
``--shards``, writes its counters as one JSON line a second on stdout, and
logs on stderr.  SIGHUP re-reads the config file; SIGTERM drains and exits;
the parent's death sends SIGTERM (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask Linux for SIGTERM when the parent goes; exit now if it has gone already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:
        # The parent died before prctl took effect.
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webrtcstack.turn.adapters.worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--shard", type=int, required=True)
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    hello = json.loads(sys.stdin.buffer.readline() or b"{}")

    from twisted.internet import reactor as installed

    reactor: Any = installed
    from twisted.internet.task import LoopingCall
    from twisted.logger import ILogObserver, Logger, globalLogBeginner, jsonFileLogObserver, textFileLogObserver
    from zope.interface import provider

    from webrtcstack.config import ConfigError, load_config
    from webrtcstack.service import build_worker_service
    from webrtcstack.turn.adapters.driver import Shard
    from webrtcstack.turn.adapters.workers import REPORT_INTERVAL_S, counters_snapshot

    log = Logger(namespace=f"turn-worker-{args.shard}")
    try:
        config = load_config(args.config)
    except ConfigError as e:
        sys.stderr.write(f"TURN worker {args.shard}: {e}\n")
        return 2
    target: Any = (jsonFileLogObserver(sys.stderr, recordSeparator="") if config.stack.log_format == "json"
                   else textFileLogObserver(sys.stderr))

    @provider(ILogObserver)
    def observer(event: dict[str, Any]) -> None:
        # The main process writes to the same stderr: say which process a line is from.
        event = dict(event, log_namespace=f"turn-worker-{args.shard}:{event.get('log_namespace', '-')}")
        target(event)

    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    top, driver = build_worker_service(config, reactor, Shard(args.shard, args.shards),
                                       nonce_key=bytes.fromhex(hello["nonce_key"]),
                                       auth_secrets=tuple(hello.get("auth_secrets", ())))
    out = sys.stdout.buffer
    status = {"code": 0}

    def report() -> None:
        try:
            out.write(json.dumps(counters_snapshot(driver.engine.counters)).encode() + b"\n")
            out.flush()
        except OSError:
            pass  # the parent is gone; PR_SET_PDEATHSIG stops us

    reporter = LoopingCall(report)

    def start() -> None:
        try:
            top.startService()
        except Exception:
            log.failure("TURN worker {shard} could not start", shard=args.shard)
            status["code"] = 1
            reactor.stop()
            return
        reporter.start(REPORT_INTERVAL_S, now=True)
        log.info("TURN worker {shard} of {shards} ready (pid {pid})", shard=args.shard, shards=args.shards,
                 pid=os.getpid())

    def stop() -> Any:
        def final(result: Any) -> Any:
            # Reports go on during the drain; a last one after it, so the parent's totals are final.
            if reporter.running:
                reporter.stop()
            report()
            return result

        if not top.running:
            return final(None)
        return top.stopService().addBoth(final)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
