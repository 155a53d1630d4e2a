"""What the operations side sees of a running stack.

:func:`webrtcstack.service.build_service` fills one :class:`StackRuntime`
with the live objects of each component (the TURN counters, the signaling
hub, the room storage, the certificate store) and with the hooks reload and
drain call.  The metrics collector, the status page, SIGHUP and SIGTERM all
read this one object, so none of them needs to know how a component is
built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webrtcstack.config import StackConfig

#: Lifecycle states shown by ``/status`` and ``webrtcstack_state``.
STATES = ("starting", "running", "draining", "stopping")


def describe_listener(svc: Any) -> str:
    """``what kind host:port`` of a listener service (the bound port once started)."""
    what = getattr(svc, "what", None) or "STUN/TURN"
    kind = getattr(svc, "kind", None) or "udp"
    if hasattr(svc, "address_text"):
        return f"{what} {kind} {svc.address_text()}"
    endpoint = svc.endpoint
    try:
        port = svc.bound_port()
    except Exception:
        port = endpoint.port
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{what} {kind} {host}:{port}"


class StackRuntime:
    """Live objects and hooks of one running stack.

    :param config: the config in force (replaced on a successful reload).
    :param clock: the reactor (``seconds()`` only).
    """

    def __init__(self, config: StackConfig, clock: Any) -> None:
        self.config = config
        self.clock = clock
        self.started_at = clock.seconds()
        self.state = "starting"
        self.last_reload: dict[str, Any] | None = None
        #: Reloads by result ("ok", "rejected").
        self.reload_counts: dict[str, int] = {}
        #: The certificate store, when any TLS listener is configured.
        self.cert_store: Any = None
        #: :class:`webrtcstack.turn.allocation.TurnCounters`, one per TURN engine.
        self.turn_counters: list[Any] = []
        #: ``[turn] workers`` child processes (``.index``, ``.reports``, ``.exited``), shards 1..N-1.
        self.turn_workers: list[Any] = []
        #: Callables returning (permissions, channel bindings) in force, when a component can tell.
        self.turn_gauges: list[Callable[[], dict[str, Any]]] = []
        #: Signaling hubs (``.counters``, ``.storage``).
        self.hubs: list[Any] = []
        #: Their :class:`webrtcstack.signaling.protocol.HubRunner` (the sessions admin ends members through them).
        self.hub_runners: list[Any] = []
        #: The sessions admin API's bearer token (None: the API is off)
        self.admin_token: str | None = None
        #: Signaling socket factories (``.unregistered_count``, ``.refused_origins``, ``.unregistered_closed``).
        self.signaling_factories: list[Any] = []
        #: Public HTTP sites (:class:`webrtcstack.httpsite.LimitedSite`, ``.counters``).
        self.http_sites: list[Any] = []
        #: Room storages (``room_count()``, ``iter_rooms()``).
        self.room_storages: list[Any] = []
        #: One-port listeners' demux factories (``.counts``).
        self.demux_factories: list[Any] = []
        #: Called with the new config after a reload is accepted.
        self.reloaders: list[Callable[[StackConfig], None]] = []
        #: Called once when draining starts: refuse new allocations and joins.
        self.drainers: list[Callable[[], None]] = []
        #: Each returns how many sessions (allocations, connected clients) are still up.
        self.busy_counters: list[Callable[[], int]] = []
        #: Listener services by name, for ``/status``.
        self.listeners: list[Any] = []
        #: :class:`webrtcstack.sockets.ConnectionBudget` of each connection limit
        #: the shell enforces ("http", "one-port"), for metrics.
        self.connection_budgets: dict[str, Any] = {}
        #: :class:`webrtcstack.cluster.node.ClusterNode` with ``[redis] url``, else None
        self.cluster: Any = None
        #: :class:`webrtcstack.turn.engine.TurnEngine` of this process, when TURN is enabled
        self.turn_engine: Any = None
        #: :class:`webrtcstack.certs.renewal.RenewalPlan` with ``[tls] acme = yes``, else None
        self.acme: Any = None

    def bound_listeners(self) -> list[Any]:
        """The listener services that bound (an optional one that could not is left out)."""
        return [s for s in self.listeners if not getattr(s, "failed", False)]

    def status_line(self) -> str:
        """The one line systemd shows (``STATUS=``): listeners, and why the node is not ready if it is not."""
        line = f"serving {len(self.bound_listeners())} listeners"
        if self.cluster is not None:
            reason = self.cluster.not_ready_reason()
            line += f"; not ready: {reason}" if reason else f"; cluster node {self.cluster.lease.node_id} ready"
        return line

    def uptime_s(self) -> float:
        """Seconds since the stack was built."""
        return float(self.clock.seconds() - self.started_at)

    def busy(self) -> int:
        """Sessions still up across components (drain waits for 0)."""
        return sum(count() for count in self.busy_counters)

    def allocations(self) -> int:
        """TURN allocations now, all families and transports."""
        return sum(sum(c.allocations_active.values()) for c in self.turn_counters)

    def room_counts(self) -> tuple[int, int]:
        """(rooms, clients in rooms) now."""
        rooms = clients = 0
        for storage in self.room_storages:
            rooms += storage.room_count()
            for room in storage.iter_rooms():
                clients += len(getattr(room, "members", ()))
        return rooms, clients

    def websockets(self) -> int:
        """Registered signaling WebSockets now."""
        return sum(hub.counters.open_ws for hub in self.hubs)

    def websockets_unregistered(self) -> int:
        """Open signaling WebSockets that have not registered (yet)."""
        return sum(f.unregistered_count for f in self.signaling_factories)

    def status(self) -> dict[str, Any]:
        """The ``/status`` JSON object (and ``webrtcstack status``)."""
        from webrtcstack import __version__

        rooms, clients = self.room_counts()
        out: dict[str, Any] = {
            "version": __version__,
            "state": self.state,
            "uptime_s": round(self.uptime_s(), 3),
            "config": self.config.filename,
            "allocations": self.allocations(),
            "rooms": rooms,
            "clients": clients,
            "websockets": self.websockets(),
            "websockets_unregistered": self.websockets_unregistered(),
            "listeners": [describe_listener(s) for s in self.listeners],
        }
        if self.cert_store is not None and self.cert_store.info is not None:
            info = self.cert_store.info
            out["certificate"] = {"subject": info.subject, "issuer": info.issuer, "names": list(info.names),
                                  "not_after": info.not_after, "sha256": info.fingerprint_sha256}
        if self.acme is not None:
            out["acme"] = self.acme.describe(self.clock.seconds())
        if self.last_reload is not None:
            out["last_reload"] = self.last_reload
        if self.cluster is not None:
            out["cluster"] = self.cluster.status()
        return out
