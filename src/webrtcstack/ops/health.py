"""The operations HTTP site on ``[metrics] listen``: ``/metrics``, ``/healthz``, ``/status``.

It listens on loopback by default (127.0.0.1:9641): the numbers say how busy
the server is, which is nobody else's business.  ``/healthz`` answers 200
while the stack runs and 503 once it drains, so a load balancer stops sending
new users to a server that is going away.
"""

from __future__ import annotations

import json

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from webrtcstack.ops.metrics import render
from webrtcstack.ops.runtime import StackRuntime


class MetricsResource(resource.Resource):
    """``GET /metrics``: the Prometheus text format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return render(self.registry)


class HealthResource(resource.Resource):
    """``GET /healthz``: ``ok`` (200) while running; ``draining`` (503) after SIGTERM;
    ``not ready: …`` (503) while shared state (``[redis]``) is out of reach;
    ``degraded: …`` (503) while a connection limit is reached (new clients are being refused),
    so a load balancer sends them elsewhere.

    With ``[tls] acme = yes``, a failing renewal adds a second line
    (``warning: certificate renewal failing …``) while the certificate in
    force is still good, and turns the answer to ``degraded: …`` (503) once
    there is no good certificate (never issued, or expired)."""

    isLeaf = True

    def __init__(self, runtime: StackRuntime) -> None:
        super().__init__()
        self.runtime = runtime

    def render_GET(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        state = self.runtime.state
        if state in ("starting", "running"):
            cluster = self.runtime.cluster
            why = cluster.not_ready_reason() if cluster is not None else ""
            if why:
                request.setResponseCode(503)
                return ("not ready: " + why + "\n").encode()
            full = sorted(name for name, budget in self.runtime.connection_budgets.items() if budget.saturated)
            acme = self.runtime.acme
            if acme is not None:
                now = self.runtime.clock.seconds()
                problem = acme.problem(now)
                if problem and acme.state(now) in ("none", "expired"):
                    request.setResponseCode(503)
                    return ("degraded: " + problem + "\n").encode()
                if problem and not full:
                    return ("ok\nwarning: " + problem + "\n").encode()
            if not full:
                return b"ok\n"
            request.setResponseCode(503)
            return ("degraded: connection limit reached (" + ", ".join(full) + ")\n").encode()
        request.setResponseCode(503)
        return state.encode() + b"\n"


class StatusResource(resource.Resource):
    """``GET /status``: uptime and counts as JSON (like collider's ``/status``)."""

    isLeaf = True

    def __init__(self, runtime: StackRuntime) -> None:
        super().__init__()
        self.runtime = runtime

    def render_GET(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self.runtime.status(), sort_keys=True).encode() + b"\n"


class _Root(resource.Resource):
    def render_GET(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"webrtcstack operations: /metrics /healthz /status /admin/sessions (token)\n"


def build_ops_site(runtime: StackRuntime, registry: CollectorRegistry) -> server.Site:
    """The Site served on ``[metrics] listen``."""
    root = _Root()
    root.putChild(b"metrics", MetricsResource(registry))
    root.putChild(b"healthz", HealthResource(runtime))
    root.putChild(b"status", StatusResource(runtime))
    from webrtcstack.ops.admin import AdminResource

    root.putChild(b"admin", AdminResource(runtime, runtime.admin_token))
    site = server.Site(root)
    site.displayTracebacks = False
    site.noisy = False
    # No access log line per scrape: Prometheus polls every few seconds.
    site.log = lambda request: None  # type: ignore[method-assign]
    return site
