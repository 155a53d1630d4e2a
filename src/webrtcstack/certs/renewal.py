"""When to get a certificate from the ACME server, and what to say about it.

Plain Python driven by method calls that take ``now`` (seconds since the
epoch); :class:`webrtcstack.certs.service.AcmeService` carries the plan out.

- No certificate yet, or one that does not cover every name, or one from
  another ACME directory: ask now.
- A certificate in force: ask again when a third of its lifetime is left
  (Let's Encrypt's advice, and what Caddy does), so a 90-day certificate is
  renewed 30 days before it expires and a 6-day one two days before.
- After a failure: the certificate in force keeps being served; try again
  after a back-off that starts at a twentieth of the lifetime (between 1 s
  and an hour; 30 s with no certificate at all) and doubles with each
  failure in a row, up to six hours.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["RenewalPlan", "RENEW_WHEN_LEFT", "MAX_RETRY_S"]

#: renew when this fraction of the lifetime is left
RENEW_WHEN_LEFT = 1 / 3
#: the first wait after a failure with no certificate in force
FIRST_RETRY_S = 30.0
#: the first wait after a failure is lifetime / this, clamped to [MIN_RETRY_S, HOUR]
RETRY_DIVISOR = 20
MIN_RETRY_S = 1.0
HOUR = 3600.0
#: the longest wait between attempts
MAX_RETRY_S = 6 * HOUR


class RenewalPlan:
    """The ACME schedule for one certificate covering ``names``.

    :param names: the DNS names (and IP addresses) the certificate must cover.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(dict.fromkeys(names))
        #: the certificate in force (None: none, or not one this plan counts)
        self.not_before: float | None = None
        self.not_after: float | None = None
        self.failures = 0
        self.last_error = ""
        self.failing_since: float | None = None
        self.retry_at: float | None = None
        self.attempting = False
        self.issued = 0
        self.attempts = 0

    # -- inputs -------------------------------------------------------------------

    def covers(self, cert_names: Iterable[str]) -> bool:
        """Whether a certificate for ``cert_names`` serves every name of this plan."""
        have = {n.lower() for n in cert_names}
        return all(n.lower() in have for n in self.names)

    def installed(self, cert_names: Iterable[str], not_before: float, not_after: float) -> bool:
        """A certificate from this plan's directory is in force (one kept from an earlier run).

        :returns: whether it counts (it covers every name); one that does not is renewed at once.
        """
        if not self.covers(cert_names) or not_after <= not_before:
            self.not_before = self.not_after = None
            return False
        self.not_before, self.not_after = not_before, not_after
        return True

    def started(self, now: float) -> None:
        """An attempt (an ACME order) begins."""
        self.attempting = True
        self.attempts += 1

    def succeeded(self, cert_names: Iterable[str], not_before: float, not_after: float, now: float) -> None:
        """The ACME server issued a certificate and it is now served."""
        self.attempting = False
        self.installed(cert_names, not_before, not_after)
        self.issued += 1
        self.failures = 0
        self.last_error = ""
        self.failing_since = None
        self.retry_at = None

    def failed(self, error: str, now: float) -> float:
        """The attempt failed (``error`` says why); returns when the next one is due."""
        self.attempting = False
        self.failures += 1
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = now
        self.retry_at = now + self.retry_delay()
        return self.retry_at

    # -- outputs ------------------------------------------------------------------

    def lifetime(self) -> float | None:
        """The lifetime of the certificate in force (None without one)."""
        if self.not_before is None or self.not_after is None:
            return None
        return self.not_after - self.not_before

    def renew_at(self) -> float | None:
        """When the certificate in force is due for renewal (None without one)."""
        life = self.lifetime()
        if life is None or self.not_after is None:
            return None
        return self.not_after - life * RENEW_WHEN_LEFT

    def retry_delay(self) -> float:
        """The wait after the failures so far (see the module docstring)."""
        life = self.lifetime()
        base = FIRST_RETRY_S if life is None else min(HOUR, max(MIN_RETRY_S, life / RETRY_DIVISOR))
        return float(min(MAX_RETRY_S, base * 2.0 ** max(0, self.failures - 1)))

    def due_at(self) -> float:
        """When the next attempt should start (0: now)."""
        if self.retry_at is not None:
            return self.retry_at
        renew = self.renew_at()
        return 0.0 if renew is None else renew

    def state(self, now: float) -> str:
        """``valid``, ``renewal failing`` (the old certificate is still served), ``expired``, or ``none``."""
        if self.not_after is None:
            return "none"
        if now >= self.not_after:
            return "expired"
        return "renewal failing" if self.failures else "valid"

    def problem(self, now: float) -> str:
        """A line for ``/healthz`` when something needs the operator ("" when all is well)."""
        state = self.state(now)
        if state == "valid" or (state == "none" and not self.failures):
            return ""
        why = f": {self.last_error}" if self.last_error else ""
        if state == "none":
            return f"no certificate from the ACME server yet ({self.failures} attempts failed{why})"
        if state == "expired":
            return f"the certificate expired and renewal is failing ({self.failures} attempts{why})"
        assert self.not_after is not None
        return (f"certificate renewal failing ({self.failures} attempts{why}); still serving the certificate "
                f"that expires in {_duration(self.not_after - now)}")

    def describe(self, now: float) -> dict[str, Any]:
        """The plan as JSON-able facts (``/status``)."""
        return {
            "names": list(self.names),
            "state": self.state(now),
            "not_after": self.not_after,
            "renew_at": self.renew_at(),
            "next_attempt_at": None if self.attempting else self.due_at(),
            "attempting": self.attempting,
            "failures": self.failures,
            "last_error": self.last_error,
            "issued": self.issued,
        }


def _duration(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``40s``: short and human."""
    s = max(0, int(seconds))
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{s}s"
