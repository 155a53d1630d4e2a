"""The top service: start, SIGHUP reload, SIGTERM drain, systemd notify.

:class:`StackService` is the one MultiService ``makeService`` returns.

- Start: children bind their ports in order; once all are bound the state
  is ``running`` and systemd hears ``READY=1``.
- SIGHUP (``systemctl reload``): :meth:`StackService.reload` re-reads the
  config file.  An invalid file (or certificate) is rejected with one error
  line and nothing changes; otherwise the new values go to every component's
  reload hook, and keys that need new sockets are logged as needing a restart.
- SIGTERM: the reactor stops its services; :meth:`StackService.stopService`
  first drains (``STOPPING=1``, new allocations and joins refused, wait until
  no session is left or ``[stack] drain_seconds`` pass), then closes ports.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import ILogObserver, Logger

from webrtcstack.config import ConfigError, StackConfig, load_config
from webrtcstack.ops import reload as reloading
from webrtcstack.ops.runtime import StackRuntime, describe_listener
from webrtcstack.ops.systemd import SystemdNotifier

log = Logger()

#: How often the drain checks whether every session has ended.
DRAIN_POLL_S = 0.5


class StackService(service.MultiService):
    """The whole stack: one child per listener, plus reload and drain.

    :param runtime: the live objects and hooks.
    :param clock: the reactor (``callLater``, ``seconds``).
    :param notifier: systemd notify (a no-op outside systemd).
    :param load: reads the config file (``load_config``; tests pass their own).
    :param install_signals: set a SIGHUP handler while running (off in tests).
    """

    def __init__(self, runtime: StackRuntime, clock: Any, *, notifier: SystemdNotifier | None = None,
                 load: Callable[[str], StackConfig] = load_config, install_signals: bool = True) -> None:
        super().__init__()
        self.runtime = runtime
        self.clock = clock
        self.notifier = notifier if notifier is not None else SystemdNotifier(clock)
        self.load = load
        self.install_signals = install_signals
        self._old_sighup: Any = None
        self._drained: defer.Deferred[None] | None = None

    # -- twistd hooks ------------------------------------------------------------

    def setServiceParent(self, parent: Any) -> Any:
        # twistd attaches us to its Application before it starts logging, and
        # then uses the Application's ILogObserver component if there is one.
        if self.runtime.config.stack.log_format == "json" and hasattr(parent, "setComponent"):
            from webrtcstack.ops.logs import json_observer

            if parent.getComponent(ILogObserver, None) is None:
                parent.setComponent(ILogObserver, json_observer())
        return super().setServiceParent(parent)

    def startService(self) -> None:
        from webrtcstack.sockets import StartFailed

        try:
            # Every required address (and the kernel offload, when it is required) first, so a port in
            # use stops the start before any port is bound.
            for svc in _services(self):
                preflight = getattr(svc, "preflight", None)
                if preflight is not None:
                    preflight()
            super().startService()
        except StartFailed as e:
            # One clear line and exit status 2 (the config cannot be served here), not a traceback;
            # what did bind is closed first.
            log.critical("webrtcstack: {error}", error=str(e))
            for child in reversed(list(self)):
                if child.running:
                    try:
                        child.stopService()
                    except Exception:
                        pass
            self.running = False
            raise SystemExit(2) from None
        self.runtime.state = "running"
        if self.install_signals:
            self._old_sighup = signal.signal(signal.SIGHUP, self._on_sighup)
        listeners = ", ".join(describe_listener(s) for s in self.runtime.bound_listeners())
        log.info("webrtcstack ready: {listeners}", listeners=listeners or "no listeners")
        self.notifier.ready(status=self.runtime.status_line())
        if self.runtime.cluster is not None:
            # Redis coming and going changes readiness: systemctl status shows it.
            self.runtime.cluster.on_readiness.append(self._readiness)

    def _readiness(self, reason: str) -> None:
        if self.runtime.state == "running":
            self.notifier.status(self.runtime.status_line())

    def _on_sighup(self, signum: int, frame: Any) -> None:
        # Signal handlers run between bytecodes; do the work in the reactor loop.
        self.clock.callFromThread(self.reload)

    # -- reload -------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file and apply it; False (and no change) if it is invalid."""
        rt = self.runtime
        path = rt.config.filename
        self.notifier.reloading()
        try:
            ok = self._reload_from(path)
        finally:
            self.notifier.reloaded(status="running" if rt.state == "running" else rt.state)
        return ok

    def _reject(self, reason: str) -> bool:
        rt = self.runtime
        rt.reload_counts["rejected"] = rt.reload_counts.get("rejected", 0) + 1
        rt.last_reload = {"result": "rejected", "at": self.clock.seconds(), "reason": reason}
        log.error("reload rejected, the running config stays: {reason}", reason=reason)
        return False

    def _reload_from(self, path: str) -> bool:
        rt = self.runtime
        if path.startswith("<"):
            return self._reject("the stack was started without a config file")
        try:
            new = self.load(path)
        except ConfigError as e:
            return self._reject(str(e))
        old = rt.config
        restart = reloading.restart_keys(old, new)
        applied = reloading.applied_keys(old, new)
        effective = reloading.effective_config(old, new)
        if effective.turn.enabled:
            from webrtcstack.config import read_users_file

            try:
                read_users_file(effective)  # a bad users_file line is refused now, not half applied later
            except ConfigError as e:
                return self._reject(str(e))
        if rt.cert_store is not None:
            from webrtcstack.tls import TlsError

            try:
                if old.tls.acme:  # the ACME files: reread as they are (the paths are the stack's own)
                    info = rt.cert_store.reload()
                else:
                    info = rt.cert_store.reload(effective.tls.certificate, effective.tls.private_key)
            except TlsError as e:
                return self._reject(str(e))
            log.info("certificate loaded: {subject}, {names}, expires at {expiry:.0f}",
                     subject=info.subject, names=",".join(info.names), expiry=info.not_after)
        for hook in rt.reloaders:
            try:
                hook(effective)
            except Exception:
                log.failure("reload hook {hook!r} failed", hook=hook)
        rt.config = effective
        rt.reload_counts["ok"] = rt.reload_counts.get("ok", 0) + 1
        rt.last_reload = {"result": "ok", "at": self.clock.seconds(), "applied": applied, "needs_restart": restart}
        log.info("reloaded {path}: {count} changed keys applied{keys}", path=path, count=len(applied),
                 keys=(": " + ", ".join(applied)) if applied else "")
        if restart:
            log.warn("reload: {keys} changed; these take effect only after a restart (the running values are kept)",
                     keys=", ".join(restart))
        return True

    # -- drain and stop -----------------------------------------------------------

    def drain(self) -> defer.Deferred[None]:
        """Refuse new sessions and wait for the current ones, at most ``drain_seconds``."""
        if self._drained is not None:
            return self._drained
        rt = self.runtime
        rt.state = "draining"
        limit = rt.config.stack.drain_seconds
        busy = rt.busy()
        self.notifier.stopping(status=f"draining {busy} sessions for up to {limit}s")
        log.info("draining: {busy} sessions, waiting up to {limit}s", busy=busy, limit=limit)
        for hook in rt.drainers:
            try:
                hook()
            except Exception:
                log.failure("drain hook {hook!r} failed", hook=hook)
        d: defer.Deferred[None] = defer.Deferred()
        self._drained = d
        deadline = self.clock.seconds() + limit
        if self.install_signals and busy:
            # A second Ctrl-C (or SIGINT) ends the wait at once.
            log.info("press Ctrl-C again to stop now")
            signal.signal(signal.SIGINT, lambda signum, frame: self.clock.callFromThread(self.stop_now))

        def check() -> None:
            if d.called:  # cut short by stop_now
                return
            left = rt.busy()
            if left == 0:
                log.info("drained: no sessions left")
                d.callback(None)
            elif self.clock.seconds() >= deadline:
                log.info("drain time is up with {left} sessions left; stopping", left=left)
                d.callback(None)
            else:
                self.clock.callLater(min(DRAIN_POLL_S, max(deadline - self.clock.seconds(), 0.0)), check)

        check()
        return d

    def stop_now(self) -> None:
        """End a drain in progress at once (the second Ctrl-C)."""
        d = self._drained
        if d is not None and not d.called:
            log.info("stopping now: {left} sessions cut off", left=self.runtime.busy())
            d.callback(None)

    def stopService(self) -> defer.Deferred[None]:
        if self.install_signals and self._old_sighup is not None:
            signal.signal(signal.SIGHUP, self._old_sighup)
            self._old_sighup = None
        d = self.drain() if self.running else defer.succeed(None)

        def close(_: object) -> Any:
            self.runtime.state = "stopping"
            self.notifier.stop_watchdog()
            return super(StackService, self).stopService()

        return d.addCallback(close)


def _services(parent: Any) -> Any:
    """Every service under ``parent``, depth first."""
    for child in parent:
        yield child
        if hasattr(child, "__iter__"):
            yield from _services(child)
