"""Prometheus metrics, read live from the running stack at scrape time.

Nothing here is bumped on the hot path: the TURN engine, the signaling hub
and the room storage keep plain integers, and :class:`StackCollector` turns
them into metric families when ``/metrics`` is scraped.  No metric carries a
user name, room id or address as a label (label sets that grow with traffic
leak memory on a busy server).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webrtcstack.ops.runtime import STATES, StackRuntime

PREFIX = "webrtcstack"


def _sum_dicts(dicts: list[dict[Any, int]]) -> dict[Any, int]:
    total: dict[Any, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def _labels(key: Any, width: int) -> list[str]:
    """A counter dict key as label values (a str or a tuple of str)."""
    values = list(key) if isinstance(key, tuple) else [key]
    values = [str(v) for v in values][:width]
    return values + [""] * (width - len(values))


def _by_label(family: type[Any], name: str, doc: str, labels: list[str], dicts: list[dict[Any, int]]) -> Metric:
    """One labelled metric family from counter dicts summed over every engine (keys become label values)."""
    metric = family(f"{PREFIX}_{name}", doc, labels=labels)
    for key, value in sorted(_sum_dicts(dicts).items()):
        metric.add_metric(_labels(key, len(labels)), value)
    return metric


class StackCollector(Collector):
    """Yields the stack's metric families from a :class:`StackRuntime`."""

    def __init__(self, runtime: StackRuntime) -> None:
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        # Registering must not scrape (components may not exist yet).
        return []

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        yield from self._lifecycle(rt)
        yield from self._turn(rt)
        yield from self._web(rt)
        yield from self._tls(rt)
        yield from self._cluster(rt)

    def _lifecycle(self, rt: StackRuntime) -> Iterator[Metric]:
        from webrtcstack import __version__

        info = GaugeMetricFamily(f"{PREFIX}_build_info", "Version of the running webrtcstack.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        state = GaugeMetricFamily(f"{PREFIX}_state", "1 for the lifecycle state the stack is in.", labels=["state"])
        for name in STATES:
            state.add_metric([name], 1 if rt.state == name else 0)
        yield state
        yield GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "Seconds since the stack started.", value=rt.uptime_s())
        reloads = CounterMetricFamily(f"{PREFIX}_reloads", "SIGHUP reloads by result.", labels=["result"])
        for result in ("ok", "rejected"):
            reloads.add_metric([result], rt.reload_counts.get(result, 0))
        yield reloads

    def _turn(self, rt: StackRuntime) -> Iterator[Metric]:
        counters = rt.turn_counters
        family_transport = ["family", "transport"]
        yield _by_label(GaugeMetricFamily, "turn_allocations", "TURN allocations now.", family_transport,
                        [c.allocations_active for c in counters])
        yield _by_label(CounterMetricFamily, "turn_allocations_created", "TURN allocations made.", family_transport,
                        [c.allocations_total for c in counters])
        if len(counters) > 1:
            # [turn] workers: one TURN engine per process, the main one first (shard 0).
            shards = CounterMetricFamily(f"{PREFIX}_turn_shard_allocations_created",
                                         "TURN allocations made, by worker process ([turn] workers).", labels=["shard"])
            for index, c in enumerate(counters):
                shards.add_metric([str(index)], sum(c.allocations_total.values()))
            yield shards
        if rt.turn_workers:
            up = GaugeMetricFamily(f"{PREFIX}_turn_worker_up",
                                   "1 while a TURN worker process runs and reports ([turn] workers; shard 0 is this one).",
                                   labels=["shard"])
            up.add_metric(["0"], 1)
            for worker in rt.turn_workers:
                up.add_metric([str(worker.index)], 1 if worker.reports and not worker.exited else 0)
            yield up
        yield GaugeMetricFamily(f"{PREFIX}_turn_permissions", "TURN permissions now.",
                                value=sum(c.permissions_active for c in counters))
        yield GaugeMetricFamily(f"{PREFIX}_turn_channel_bindings", "TURN channel bindings now.",
                                value=sum(c.channels_active for c in counters))
        packets = CounterMetricFamily(f"{PREFIX}_turn_relayed_packets", "Packets relayed, by direction.", labels=["direction"])
        octets = CounterMetricFamily(f"{PREFIX}_turn_relayed_bytes", "Payload bytes relayed, by direction.", labels=["direction"])
        packets.add_metric(["to_peer"], sum(c.packets_to_peer for c in counters))
        packets.add_metric(["to_client"], sum(c.packets_to_client for c in counters))
        octets.add_metric(["to_peer"], sum(c.bytes_to_peer for c in counters))
        octets.add_metric(["to_client"], sum(c.bytes_to_client for c in counters))
        yield packets
        yield octets
        offload_packets = CounterMetricFamily(
            f"{PREFIX}_turn_offload_packets",
            "The part of turn_relayed_packets the kernel offload forwarded ([turn] kernel_offload), by direction.",
            labels=["direction"])
        offload_bytes = CounterMetricFamily(
            f"{PREFIX}_turn_offload_bytes",
            "The part of turn_relayed_bytes the kernel offload forwarded, by direction.", labels=["direction"])
        for direction in ("to_peer", "to_client"):
            offload_packets.add_metric([direction], sum(getattr(c, f"offload_packets_{direction}", 0) for c in counters))
            offload_bytes.add_metric([direction], sum(getattr(c, f"offload_bytes_{direction}", 0) for c in counters))
        yield offload_packets
        yield offload_bytes
        yield GaugeMetricFamily(f"{PREFIX}_turn_offload_channels",
                                "Channel bindings the kernel offload forwards now (both directions each).",
                                value=sum(getattr(c, "offload_channels", 0) for c in counters))
        yield CounterMetricFamily(f"{PREFIX}_turn_offload_refused",
                                  "Channel bindings left on the Python path because the kernel maps were full.",
                                  value=sum(getattr(c, "offload_refused", 0) for c in counters))
        yield _by_label(CounterMetricFamily, "turn_dtls_events",
                        "TURN over DTLS ([turn] dtls), by event: cookie_sent (a HelloVerifyRequest, no state kept), "
                        "handshakes, closed, idle, failed, fatal, refused_full, not_a_hello, bad_hello, stopped.",
                        ["event"], [getattr(c, "dtls", {}) for c in counters])
        yield GaugeMetricFamily(f"{PREFIX}_turn_tcp_relay_connections",
                                "RFC 6062 peer TCP connections alive now ([turn] tcp_relay), connecting, waiting "
                                "for their ConnectionBind or bound.",
                                value=sum(getattr(c, "tcp_connections_active", 0) for c in counters))
        yield _by_label(CounterMetricFamily, "turn_tcp_relay_events",
                        "RFC 6062 peer TCP connection events: connected, connect_failed, connect_timeout, accepted, "
                        "refused_no_permission, bound, bind_timeout, closed.",
                        ["event"], [getattr(c, "tcp_connections", {}) for c in counters])
        yield GaugeMetricFamily(f"{PREFIX}_turn_users_db_users", "TURN users loaded from [turn] users_db.",
                                value=sum(getattr(c, "users_db_users", 0) for c in counters))
        yield GaugeMetricFamily(f"{PREFIX}_turn_users_db_secrets", "REST secrets loaded from [turn] users_db.",
                                value=sum(getattr(c, "users_db_secrets", 0) for c in counters))
        yield _by_label(CounterMetricFamily, "turn_requests", "STUN/TURN requests by method and result.",
                        ["method", "result"], [c.requests for c in counters])
        yield _by_label(CounterMetricFamily, "turn_auth_failures", "Failed authentications by reason.", ["reason"],
                        [c.auth_failures for c in counters])
        yield CounterMetricFamily(f"{PREFIX}_turn_peers_denied", "Permissions or sends refused by the peer policy.",
                                  value=sum(c.peers_denied for c in counters))
        yield _by_label(CounterMetricFamily, "turn_quota_hits", "Requests refused by a quota, by quota.", ["quota"],
                        [c.quota_hits for c in counters])
        yield _by_label(CounterMetricFamily, "turn_dropped_packets", "Packets dropped, by reason.", ["reason"],
                        [c.dropped for c in counters])

    def _web(self, rt: StackRuntime) -> Iterator[Metric]:
        rooms, clients = rt.room_counts()
        yield GaugeMetricFamily(f"{PREFIX}_rooms", "Rooms now.", value=rooms)
        yield GaugeMetricFamily(f"{PREFIX}_room_clients", "Clients joined to rooms now.", value=clients)
        yield GaugeMetricFamily(f"{PREFIX}_websocket_connections", "Registered signaling WebSockets now.", value=rt.websockets())
        yield GaugeMetricFamily(f"{PREFIX}_websocket_unregistered", "Open signaling WebSockets not registered (yet).",
                                value=rt.websockets_unregistered())
        yield CounterMetricFamily(f"{PREFIX}_websocket_register_timeouts", "WebSockets closed for not registering in time.",
                                  value=sum(f.unregistered_closed for f in rt.signaling_factories))
        yield CounterMetricFamily(f"{PREFIX}_websocket_slow_readers_closed", "WebSockets closed (4009) for not reading.",
                                  value=sum(f.slow_readers_closed for f in rt.signaling_factories))
        yield CounterMetricFamily(f"{PREFIX}_websocket_refused_origins", "WebSocket handshakes refused by the Origin check.",
                                  value=sum(f.refused_origins for f in rt.signaling_factories))
        ws_refused = CounterMetricFamily(f"{PREFIX}_websocket_connections_refused",
                                         "WebSocket handshakes refused by a connection limit.", labels=["limit"])
        ws_refused.add_metric(["total"], sum(f.refused_full for f in rt.signaling_factories))
        ws_refused.add_metric(["per_address"], sum(f.refused_per_address for f in rt.signaling_factories))
        yield ws_refused
        yield CounterMetricFamily(f"{PREFIX}_websocket_connections_opened", "Signaling WebSockets opened.",
                                  value=sum(h.counters.total_ws for h in rt.hubs))
        yield GaugeMetricFamily(f"{PREFIX}_buffered_message_bytes", "Bytes of queued and stored client messages held now.",
                                value=sum(h.buffers.held for h in rt.hubs))
        yield CounterMetricFamily(f"{PREFIX}_buffered_message_refusals",
                                  "Messages refused because [stack] max_buffered_bytes was reached.",
                                  value=sum(h.buffers.refused for h in rt.hubs))
        yield CounterMetricFamily(f"{PREFIX}_websocket_errors", "Signaling WebSocket errors.",
                                  value=sum(h.counters.ws_errors for h in rt.hubs))
        messages = CounterMetricFamily(f"{PREFIX}_signaling_messages", "Signaling messages by outcome.", labels=["outcome"])
        for outcome in ("forwarded", "queued", "dropped"):
            messages.add_metric([outcome], sum(getattr(h.counters, f"messages_{outcome}") for h in rt.hubs))
        yield messages
        yield _by_label(CounterMetricFamily, "oneport_connections",
                        "Connections on one-port TLS listeners, by the side chosen.", ["protocol"],
                        [f.counts for f in rt.demux_factories])
        budgets = sorted(rt.connection_budgets.items())
        open_now = GaugeMetricFamily(f"{PREFIX}_connections", "Open connections counted against a shell limit.",
                                     labels=["limit"])
        refused = CounterMetricFamily(f"{PREFIX}_connections_refused", "Connections closed at once by a shell limit.",
                                      labels=["limit"])
        per_address = CounterMetricFamily(f"{PREFIX}_connections_refused_per_address",
                                          "Connections refused because their address had its share open already.",
                                          labels=["limit"])
        for name, budget in budgets:
            open_now.add_metric([name], budget.open)
            refused.add_metric([name], budget.refused)
            per_address.add_metric([name], budget.refused_per_address)
        yield open_now
        yield refused
        yield per_address
        http_refused = CounterMetricFamily(f"{PREFIX}_http_requests_refused",
                                           "HTTP requests refused before a resource saw them, by reason.", labels=["reason"])
        for label, counter in (("body_too_large", "bodies_refused"), ("timeout", "request_timeouts"),
                               ("rate", "writes_refused")):
            http_refused.add_metric([label], sum(site.counters[counter] for site in rt.http_sites))
        yield http_refused

    def _cluster(self, rt: StackRuntime) -> Iterator[Metric]:
        node = rt.cluster
        if node is None:
            return
        clients = [node.client] + ([node.rooms.inbox_client] if node.rooms is not None else [])
        up = GaugeMetricFamily(f"{PREFIX}_redis_up", "1 while the Redis connection is up, by role.", labels=["connection"])
        trips = CounterMetricFamily(f"{PREFIX}_redis_commands", "Redis commands sent (round trips), by connection.",
                                    labels=["connection"])
        reconnects = CounterMetricFamily(f"{PREFIX}_redis_reconnects", "Redis connections made again after a loss.",
                                         labels=["connection"])
        for client in clients:
            up.add_metric([client.name], 1 if client.up else 0)
            trips.add_metric([client.name], client.round_trips)
            reconnects.add_metric([client.name], client.reconnects)
        yield up
        yield trips
        yield reconnects
        yield GaugeMetricFamily(f"{PREFIX}_cluster_ready", "1 while this node holds its lease and reaches Redis.",
                                value=1 if node.ready else 0)
        yield GaugeMetricFamily(f"{PREFIX}_cluster_nodes", "Live nodes, as of this node's last lease renewal.",
                                value=len(node.nodes))
        yield CounterMetricFamily(f"{PREFIX}_cluster_lease_renewals", "Lease renewals written.", value=node.renewals)
        yield CounterMetricFamily(f"{PREFIX}_cluster_fences", "Times this node found its lease lapsed and fenced itself.",
                                  value=node.lease.fences)
        engine = rt.turn_engine
        if engine is not None and engine.elsewhere is not None:
            yield GaugeMetricFamily(f"{PREFIX}_cluster_allocations",
                                    "TURN allocations on every live node: this node's now, the others' as of their last lease renewal.",
                                    value=engine.allocation_count() + engine.elsewhere.total)
        rooms = node.rooms
        if rooms is not None:
            messages = CounterMetricFamily(f"{PREFIX}_cluster_messages", "Deliveries between nodes, by direction.",
                                           labels=["direction"])
            messages.add_metric(["sent"], rooms.sent)
            messages.add_metric(["received"], rooms.received)
            messages.add_metric(["undeliverable"], rooms.undeliverable)
            yield messages
            yield CounterMetricFamily(f"{PREFIX}_cluster_reaped_nodes", "Dead nodes this node reaped.", value=rooms.reaped)
            yield CounterMetricFamily(f"{PREFIX}_cluster_room_changes", "Changes of shared room records made by this node.",
                                      value=rooms.changes)
            yield CounterMetricFamily(f"{PREFIX}_cluster_fast_sends",
                                      "Messages sent on a cached, still current room record (one round trip or none).",
                                      value=rooms.fast_sends)
            yield CounterMetricFamily(f"{PREFIX}_cluster_rooms_reasserted",
                                      "Rooms re-written from this node's sockets after Redis restarted empty.",
                                      value=rooms.reasserted)
            yield CounterMetricFamily(f"{PREFIX}_cluster_lock_waits", "Room changes that waited for another node's lock.",
                                      value=rooms.lock_waits)

    def _tls(self, rt: StackRuntime) -> Iterator[Metric]:
        store = rt.cert_store
        if store is not None and store.info is not None:
            yield GaugeMetricFamily(f"{PREFIX}_tls_certificate_expiry_timestamp_seconds",
                                    "When the served certificate expires (Unix time).", value=store.info.not_after)
        plan = rt.acme
        if plan is not None:
            yield CounterMetricFamily(f"{PREFIX}_acme_certificates_issued", "Certificates the ACME server issued to this process.",
                                      value=plan.issued)
            yield CounterMetricFamily(f"{PREFIX}_acme_orders", "ACME orders started (first issue and renewals).",
                                      value=plan.attempts)
            yield GaugeMetricFamily(f"{PREFIX}_acme_renewal_failures",
                                    "ACME orders failed in a row (0 once one succeeds); the old certificate is still served.",
                                    value=plan.failures)
            yield GaugeMetricFamily(f"{PREFIX}_acme_next_attempt_timestamp_seconds",
                                    "When the next ACME order is due (Unix time).", value=plan.due_at())


def make_registry(runtime: StackRuntime, *, process: bool = True) -> CollectorRegistry:
    """A registry of its own (not the global one) with the stack and process collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StackCollector(runtime))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
