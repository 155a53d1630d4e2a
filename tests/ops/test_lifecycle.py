"""SIGHUP reload and SIGTERM drain of the top service."""

from __future__ import annotations

import os
import signal

from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests.ops.support import make_cert
from tests.support import fired_within
from webrtcstack.config import load_config
from webrtcstack.ops.lifecycle import StackService
from webrtcstack.ops.runtime import StackRuntime
from webrtcstack.tls import CertificateStore


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self, status: str = "") -> None:
        self.sent.append("READY")

    def reloading(self) -> None:
        self.sent.append("RELOADING")

    def reloaded(self, status: str = "") -> None:
        self.sent.append("READY")

    def stopping(self, status: str = "") -> None:
        self.sent.append("STOPPING")

    def stop_watchdog(self) -> None:
        self.sent.append("WATCHDOG-OFF")


class LifecycleCase(unittest.TestCase):
    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text)

    def make(self, text: str, clock=None, install_signals: bool = False) -> StackService:  # type: ignore[no-untyped-def]
        self.path = os.path.abspath(self.mktemp())
        self.write(text)
        self.clock = clock if clock is not None else task.Clock()
        self.runtime = StackRuntime(load_config(self.path), self.clock)
        self.notifier = FakeNotifier()
        self.applied: list = []
        self.runtime.reloaders.append(self.applied.append)
        svc = StackService(self.runtime, self.clock, notifier=self.notifier, install_signals=install_signals)  # type: ignore[arg-type]
        svc.startService()
        return svc

    def capture_logs(self) -> list[str]:
        from twisted.logger import formatEvent

        lines: list[str] = []

        def observer(event):  # type: ignore[no-untyped-def]
            lines.append(f"{event['log_level'].name} {formatEvent(event)}")

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return lines


BASE = "[turn]\nlisten = 127.0.0.1:3478\nuser_quota = 5\ndenied_peers = 10.0.0.0/8\n[stack]\ndrain_seconds = 10\n"


class ReloadTests(LifecycleCase):
    def test_invalid_config_is_rejected_and_the_old_stays(self) -> None:
        """A bad file on reload logs one error naming the key, and nothing is applied."""
        svc = self.make(BASE)
        old = self.runtime.config
        logs = self.capture_logs()
        self.write(BASE.replace("user_quota = 5", "user_quota = lots"))
        self.assertFalse(svc.reload())
        self.assertIs(self.runtime.config, old)
        self.assertEqual(self.applied, [])
        self.assertEqual(self.runtime.reload_counts, {"rejected": 1})
        errors = [line for line in logs if line.startswith("error ")]
        self.assertEqual(len(errors), 1)
        self.assertIn("[turn] user_quota", errors[0])
        self.assertIn("the running config stays", errors[0])
        self.assertEqual(self.notifier.sent, ["READY", "RELOADING", "READY"])

    def test_bad_users_file_line_rejects_the_reload(self) -> None:
        """A users_file that gains a bad line is refused on reload, naming the file and line; nothing is applied."""
        users = os.path.abspath(self.mktemp())
        with open(users, "w") as f:
            f.write("alice:pw\n")
        svc = self.make(BASE)
        self.write(BASE.replace("user_quota = 5", f"user_quota = 5\nusers_file = {users}"))
        self.assertTrue(svc.reload())
        with open(users, "a") as f:
            f.write("no-password-here\n")
        logs = self.capture_logs()
        self.assertFalse(svc.reload())
        self.assertEqual(len(self.applied), 1)
        self.assertTrue(any(f"{users}: line 2: 'no-password-here' is not name:password" in line for line in logs), logs)

    def test_valid_config_applies_and_reports_listener_changes(self) -> None:
        """Quota and peer-list changes reach the hooks; a listen change is kept back and reported."""
        svc = self.make(BASE)
        logs = self.capture_logs()
        self.write(BASE.replace("user_quota = 5", "user_quota = 7").replace("10.0.0.0/8", "10.0.0.0/8 192.0.2.0/24")
                   .replace("127.0.0.1:3478", "127.0.0.1:3479"))
        self.assertTrue(svc.reload())
        (applied,) = self.applied
        self.assertEqual(applied.turn.user_quota, 7)
        self.assertEqual(len(applied.turn.denied_peers), 2)
        self.assertEqual(str(applied.turn.listen[0]), "127.0.0.1:3478")
        self.assertEqual(self.runtime.last_reload["needs_restart"], ["[turn] listen"])
        self.assertEqual(self.runtime.last_reload["applied"], ["[turn] denied_peers", "[turn] user_quota"])
        self.assertTrue(any(line.startswith("warn ") and "[turn] listen" in line and "restart" in line for line in logs))

    def test_bad_certificate_rejects_the_reload(self) -> None:
        """A new config naming an unusable certificate is rejected as a whole; the old certificate stays."""
        cert, key, _ = make_cert(self)
        tls = f"[tls]\ncertificate = {cert}\nprivate_key = {key}\n[http]\ntls_listen = 127.0.0.1:0\n"
        svc = self.make(BASE + tls)
        store = CertificateStore(cert, key)
        info = store.load()
        self.runtime.cert_store = store
        self.write(BASE.replace("user_quota = 5", "user_quota = 6") + tls.replace(cert, cert + ".missing"))
        self.assertFalse(svc.reload())
        self.assertEqual((store.info, store.certificate_path), (info, cert))
        self.assertEqual(self.applied, [])
        self.assertIn("[tls] certificate", self.runtime.last_reload["reason"])

    @defer.inlineCallbacks
    def test_sighup_triggers_a_reload(self) -> None:
        """A real SIGHUP to the process re-reads the file while the service runs; the old handler is back after stop."""
        before = signal.getsignal(signal.SIGHUP)
        svc = self.make(BASE, clock=reactor, install_signals=True)
        self.write(BASE.replace("user_quota = 5", "user_quota = 9"))
        reloaded: defer.Deferred[None] = defer.Deferred()
        self.runtime.reloaders.append(lambda config: reloaded.callback(None))
        os.kill(os.getpid(), signal.SIGHUP)
        yield fired_within(reloaded, 5)
        self.assertEqual(self.applied[0].turn.user_quota, 9)
        yield svc.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)


class DrainTests(LifecycleCase):
    def test_drain_waits_for_sessions_to_end(self) -> None:
        """Stopping refuses new sessions at once, then waits until none is left before closing."""
        svc = self.make(BASE)
        sessions = [2]
        refused: list[bool] = []
        self.runtime.busy_counters.append(lambda: sessions[0])
        self.runtime.drainers.append(lambda: refused.append(True))
        d = svc.stopService()
        self.assertEqual((refused, self.runtime.state), ([True], "draining"))
        self.assertIn("STOPPING", self.notifier.sent)
        self.clock.advance(3)
        self.assertNoResult(d)
        sessions[0] = 0
        self.clock.advance(0.5)
        self.successResultOf(d)
        self.assertEqual(self.runtime.state, "stopping")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_drain_gives_up_after_drain_seconds(self) -> None:
        """Sessions still up after [stack] drain_seconds do not hold the stop any longer."""
        svc = self.make(BASE)
        self.runtime.busy_counters.append(lambda: 1)
        d = svc.stopService()
        self.clock.advance(9.5)
        self.assertNoResult(d)
        self.clock.advance(0.5)
        self.successResultOf(d)

    def test_zero_drain_stops_at_once(self) -> None:
        """With drain_seconds = 0 the stop goes on at once."""
        svc = self.make(BASE.replace("drain_seconds = 10", "drain_seconds = 0"))
        self.runtime.busy_counters.append(lambda: 5)
        self.successResultOf(svc.stopService())
