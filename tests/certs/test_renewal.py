"""The ACME schedule (sans-IO): when to order, how long to wait after failures, what to say."""

from __future__ import annotations

from twisted.trial import unittest

from webrtcstack.certs.renewal import MAX_RETRY_S, RenewalPlan

DAY = 86400.0


class RenewalPlanTests(unittest.TestCase):
    def test_no_certificate_is_due_now(self) -> None:
        """With nothing issued yet the first order is due at once, and that is no problem yet."""
        plan = RenewalPlan(["call.example.org"])
        self.assertEqual(plan.due_at(), 0.0)
        self.assertEqual(plan.state(100.0), "none")
        self.assertEqual(plan.problem(100.0), "")

    def test_renewal_when_a_third_is_left(self) -> None:
        """A 90-day certificate is renewed 30 days before it expires; a 6-day one 2 days before."""
        plan = RenewalPlan(["a.example"])
        self.assertTrue(plan.installed(["a.example"], 0.0, 90 * DAY))
        self.assertAlmostEqual(plan.due_at(), 60 * DAY)
        plan.installed(["a.example"], 1000.0, 1000.0 + 6 * DAY)
        self.assertAlmostEqual(plan.due_at(), 1000.0 + 4 * DAY)

    def test_a_certificate_missing_a_name_is_replaced_now(self) -> None:
        """A kept certificate that does not cover every configured name does not count (names compare case-blind)."""
        plan = RenewalPlan(["a.example", "www.a.example"])
        self.assertFalse(plan.installed(["a.example"], 0.0, 90 * DAY))
        self.assertEqual(plan.due_at(), 0.0)
        self.assertTrue(plan.installed(["WWW.a.example", "a.example", "other"], 0.0, 90 * DAY))

    def test_failures_back_off_and_keep_the_old_certificate(self) -> None:
        """After failures the old certificate still counts; retries double from a twentieth of the lifetime, capped."""
        plan = RenewalPlan(["a.example"])
        plan.installed(["a.example"], 0.0, 90 * DAY)
        now = 60 * DAY
        plan.started(now)
        first = plan.failed("connection refused", now)
        self.assertEqual(first - now, 3600.0)  # 90 days / 20 is 4.5 days: clamped to an hour
        self.assertEqual(plan.retry_delay(), 3600.0)
        plan.failed("connection refused", first)
        self.assertEqual(plan.retry_delay(), 7200.0)
        for _ in range(10):
            plan.failed("again", now)
        self.assertEqual(plan.retry_delay(), MAX_RETRY_S)
        self.assertEqual(plan.state(now), "renewal failing")
        problem = plan.problem(now)
        self.assertIn("certificate renewal failing (12 attempts: again)", problem)
        self.assertIn("still serving the certificate that expires in 30d 0h", problem)
        self.assertEqual(plan.not_after, 90 * DAY)

    def test_short_lived_certificates_retry_quickly(self) -> None:
        """A 20 s certificate is retried after 1 s (a twentieth, at least 1 s); with none at all, after 30 s."""
        plan = RenewalPlan(["a.example"])
        plan.installed(["a.example"], 0.0, 20.0)
        self.assertEqual(plan.failed("x", 14.0), 15.0)
        fresh = RenewalPlan(["a.example"])
        self.assertEqual(fresh.failed("dns", 5.0), 35.0)
        self.assertIn("no certificate from the ACME server yet (1 attempts failed: dns)", fresh.problem(5.0))

    def test_success_clears_the_failures(self) -> None:
        """An issued certificate resets the failure count and the retry, and schedules the next renewal."""
        plan = RenewalPlan(["a.example"])
        plan.failed("x", 1.0)
        plan.started(31.0)
        plan.succeeded(["a.example"], 31.0, 31.0 + 90 * DAY, 31.0)
        self.assertEqual((plan.failures, plan.last_error, plan.issued), (0, "", 1))
        self.assertAlmostEqual(plan.due_at(), 31.0 + 60 * DAY)
        self.assertEqual(plan.problem(32.0), "")

    def test_expired(self) -> None:
        """Past its expiry with renewal failing, the plan says so (``/healthz`` turns 503 on it)."""
        plan = RenewalPlan(["a.example"])
        plan.installed(["a.example"], 0.0, 100.0)
        plan.failed("refused", 90.0)
        self.assertEqual(plan.state(100.0), "expired")
        self.assertIn("the certificate expired and renewal is failing", plan.problem(100.0))
        described = plan.describe(100.0)
        self.assertEqual((described["state"], described["failures"], described["names"]), ("expired", 1, ["a.example"]))
