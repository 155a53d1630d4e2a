"""The Twisted side of automatic certificates: a timer, a thread, files, and the swap.

:func:`prepare_acme` runs before any listener binds: it points the TLS
store at ``<state dir>/acme/`` and, when there is no certificate there yet,
writes a self-signed placeholder so the TLS listeners can start (browsers
refuse it until the real one arrives, a few seconds later).
:class:`AcmeService` then follows its :class:`~webrtcstack.certs.renewal.RenewalPlan`:
at each due time it runs :func:`~webrtcstack.certs.acme_flow.obtain_certificate`
in a thread of its own, writes the result, and reloads the store, so new
connections get the new certificate with no restart.  A failure is logged,
counted, shown in ``/healthz`` and ``/status``, and retried; the certificate
in force keeps being served.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from webrtcstack.certs.acme_flow import AcmeFailure, AcmeFiles, Http01Board, obtain_certificate
from webrtcstack.certs.renewal import RenewalPlan
from webrtcstack.config import StackConfig, acme_names
from webrtcstack.tls import CertificateInfo, CertificateStore, TlsError, describe_certificate, write_self_signed

log = Logger()

__all__ = ["AcmeService", "prepare_acme"]


def prepare_acme(config: StackConfig, state_dir: str) -> tuple[CertificateStore, RenewalPlan, AcmeFiles]:
    """The store for the ACME certificate (a placeholder until there is one) and its plan.

    :raises OSError: the state directory cannot be written.
    """
    files = AcmeFiles.under(state_dir)
    plan = RenewalPlan(acme_names(config))
    store = CertificateStore(files.certificate, files.private_key)
    try:
        info = store.load()
    except TlsError:
        info = None
    if info is not None and not info.self_signed and files.read_meta().get("directory") == config.tls.acme_directory:
        if plan.installed(info.names, info.not_before, info.not_after):
            log.info("acme: kept certificate for {names} (expires at {expiry:.0f}, renewal due at {due:.0f})",
                     names=",".join(info.names), expiry=info.not_after, due=plan.due_at())
    if info is None:
        os.makedirs(files.directory, mode=0o700, exist_ok=True)
        write_self_signed(plan.names, files.certificate, files.private_key, days=1)
        store.load()
        log.info("acme: no certificate yet; serving a self-signed placeholder for {names} until the ACME server "
                 "issues one", names=",".join(plan.names))
    return store, plan, files


def in_thread(reactor: Any, work: Callable[[], Any]) -> defer.Deferred[Any]:
    """Run blocking ``work`` in a daemon thread of its own; its result comes back in the reactor.

    Not the reactor's thread pool: a stop must not wait for an ACME server
    that does not answer (the thread is a daemon; its late result is dropped).
    """
    d: defer.Deferred[Any] = defer.Deferred()

    def run() -> None:
        try:
            result = work()
        except BaseException:
            failure = Failure()
            reactor.callFromThread(d.errback, failure)
        else:
            reactor.callFromThread(d.callback, result)

    threading.Thread(target=run, name="acme", daemon=True).start()
    return d


class AcmeService(service.Service):
    """Gets and renews the certificate in ``store`` as ``plan`` says.

    :param on_change: called with the new :class:`CertificateInfo` after each swap.
    """

    name = "acme"

    def __init__(self, config: StackConfig, reactor: Any, store: CertificateStore, plan: RenewalPlan,
                 files: AcmeFiles, board: Http01Board,
                 on_change: Callable[[CertificateInfo], None] | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.store = store
        self.plan = plan
        self.files = files
        self.board = board
        self.on_change = on_change
        self._timer: Any = None
        self._running: defer.Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()
        self._arm()

    def stopService(self) -> Any:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return None

    def _arm(self) -> None:
        if not self.running:
            return
        delay = max(0.0, self.plan.due_at() - self.reactor.seconds())
        self._timer = self.reactor.callLater(delay, self.attempt)

    def attempt(self) -> defer.Deferred[Any]:
        """Order a certificate now (the timer calls this; so may an operator's command)."""
        if self._running is not None:
            return self._running
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        tls = self.config.tls
        self.plan.started(self.reactor.seconds())
        log.info("acme: ordering a certificate for {names} from {directory}",
                 names=",".join(self.plan.names), directory=tls.acme_directory)
        d = in_thread(self.reactor, lambda: obtain_certificate(
            tls.acme_directory, self.plan.names, self.files, self.board, email=tls.acme_email, ca_file=tls.acme_ca_file))
        d.addCallbacks(self._issued, self._failed)
        self._running = d

        def done(result: Any) -> Any:
            self._running = None
            self._arm()
            return result

        d.addBoth(done)
        return d

    def _issued(self, result: tuple[bytes, bytes]) -> None:
        chain, key = result
        now = self.reactor.seconds()
        try:
            describe_certificate(chain)  # a chain that does not parse never replaces the files in force
            self.files.write(chain, key, {"directory": self.config.tls.acme_directory, "names": list(self.plan.names),
                                          "issued_at": now})
            info = self.store.reload()
        except (OSError, ValueError, TlsError) as e:
            self._failed(Failure(AcmeFailure(f"cannot install the issued certificate: {e}")))
            return
        self.plan.succeeded(info.names, info.not_before, info.not_after, now)
        log.info("acme: certificate issued for {names} by {issuer}, expires at {expiry:.0f}; now served "
                 "(next renewal due at {due:.0f})", names=",".join(info.names), issuer=info.issuer,
                 expiry=info.not_after, due=self.plan.due_at())
        if self.on_change is not None:
            self.on_change(info)

    def _failed(self, failure: Failure) -> None:
        error = failure.value
        why = str(error) if isinstance(error, AcmeFailure) else f"{type(error).__name__}: {error}"
        now = self.reactor.seconds()
        retry_at = self.plan.failed(why, now)
        if self.plan.not_after is not None:
            log.warn("acme: certificate renewal failed ({why}); still serving the certificate that expires at "
                     "{expiry:.0f}; next attempt in {wait:.0f}s", why=why, expiry=self.plan.not_after,
                     wait=retry_at - now)
        else:
            log.warn("acme: could not get a certificate ({why}); serving the self-signed placeholder; next "
                     "attempt in {wait:.0f}s", why=why, wait=retry_at - now)
