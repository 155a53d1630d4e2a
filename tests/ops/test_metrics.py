"""/metrics, /healthz and /status read the live counters at request time."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import task
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from webrtcstack.config import StackConfig
from webrtcstack.ops.health import build_ops_site
from webrtcstack.ops.metrics import make_registry, render
from webrtcstack.ops.runtime import StackRuntime
from webrtcstack.turn.allocation import TurnCounters


class FakeHub:
    def __init__(self) -> None:
        from webrtcstack.signaling.hub import Counters

        from webrtcstack.limits import ByteBudget

        self.counters = Counters(open_ws=3, total_ws=10, ws_errors=1)
        self.buffers = ByteBudget(1000)
        self.buffers.take(300)


class FakeRoom:
    def __init__(self, n: int) -> None:
        self.members = list(range(n))


class FakeStorage:
    def __init__(self, rooms: list[FakeRoom]) -> None:
        self.rooms = rooms

    def room_count(self) -> int:
        return len(self.rooms)

    def iter_rooms(self):  # type: ignore[no-untyped-def]
        return iter(self.rooms)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(site, path: bytes) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    request = DummyRequest(path.strip(b"/").split(b"/"))
    request.uri = path
    resource = site.resource
    for segment in request.postpath[:]:
        request.prepath.append(request.postpath.pop(0))
        resource = resource.getChildWithDefault(segment, request)
    body = resource.render(request)
    return request.responseCode or 200, body


class MetricsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.runtime = StackRuntime(StackConfig(), self.clock)
        self.counters = TurnCounters()
        self.runtime.turn_counters.append(self.counters)
        self.runtime.hubs.append(FakeHub())
        self.runtime.room_storages.append(FakeStorage([FakeRoom(2), FakeRoom(1)]))
        self.registry = make_registry(self.runtime, process=False)

    def test_counters_are_read_at_scrape_time(self) -> None:
        """A change to the engine's counters shows in the next scrape without any registration."""
        before = samples(render(self.registry))
        self.assertEqual(before[("webrtcstack_turn_relayed_bytes_total", (("direction", "to_peer"),))], 0)
        self.counters.allocations_active[("ipv4", "udp")] = 2
        self.counters.bytes_to_peer += 1200
        self.counters.requests[("allocate", "success")] = 5
        self.counters.auth_failures["stale_nonce"] = 1
        after = samples(render(self.registry))
        self.assertEqual(after[("webrtcstack_turn_allocations", (("family", "ipv4"), ("transport", "udp")))], 2)
        self.assertEqual(after[("webrtcstack_turn_relayed_bytes_total", (("direction", "to_peer"),))], 1200)
        self.assertEqual(after[("webrtcstack_turn_requests_total", (("method", "allocate"), ("result", "success")))], 5)
        self.assertEqual(after[("webrtcstack_turn_auth_failures_total", (("reason", "stale_nonce"),))], 1)
        self.assertEqual(after[("webrtcstack_rooms", ())], 2)
        self.assertEqual(after[("webrtcstack_room_clients", ())], 3)
        self.assertEqual(after[("webrtcstack_websocket_connections", ())], 3)
        self.assertEqual(after[("webrtcstack_buffered_message_bytes", ())], 300)

    def test_offload_dtls_and_users_db_are_exported(self) -> None:
        """The kernel offload's share, DTLS events and the users_db counts (issues 15 and 17)."""
        self.counters.offload_packets_to_peer, self.counters.offload_bytes_to_client = 7, 900
        self.counters.offload_channels, self.counters.offload_refused = 3, 1
        self.counters.dtls["cookie_sent"] = 4
        self.counters.users_db_users, self.counters.users_db_secrets = 12, 2
        after = samples(render(self.registry))
        self.assertEqual(after[("webrtcstack_turn_offload_packets_total", (("direction", "to_peer"),))], 7)
        self.assertEqual(after[("webrtcstack_turn_offload_bytes_total", (("direction", "to_client"),))], 900)
        self.assertEqual(after[("webrtcstack_turn_offload_channels", ())], 3)
        self.assertEqual(after[("webrtcstack_turn_offload_refused_total", ())], 1)
        self.assertEqual(after[("webrtcstack_turn_dtls_events_total", (("event", "cookie_sent"),))], 4)
        self.assertEqual(after[("webrtcstack_turn_users_db_users", ())], 12)
        self.assertEqual(after[("webrtcstack_turn_users_db_secrets", ())], 2)

    def test_connection_budgets_are_exported(self) -> None:
        """Each shell connection limit shows its open and refused counts."""
        from webrtcstack.sockets import ConnectionBudget

        budget = ConnectionBudget(10)
        self.runtime.connection_budgets["http"] = budget
        budget.open, budget.refused = 4, 2
        after = samples(render(self.registry))
        self.assertEqual(after[("webrtcstack_connections", (("limit", "http"),))], 4)
        self.assertEqual(after[("webrtcstack_connections_refused_total", (("limit", "http"),))], 2)

    def test_websocket_limits_are_exported(self) -> None:
        """Each signaling factory's refusals and closes show in the scrape, summed over factories."""
        from types import SimpleNamespace

        for n in (1, 2):
            self.runtime.signaling_factories.append(SimpleNamespace(
                refused_full=n, refused_per_address=10 * n, unregistered_closed=100 * n, slow_readers_closed=1000 * n,
                refused_origins=5 * n, unregistered_count=n))
        after = samples(render(self.registry))
        self.assertEqual(after[("webrtcstack_websocket_connections_refused_total", (("limit", "total"),))], 3)
        self.assertEqual(after[("webrtcstack_websocket_connections_refused_total", (("limit", "per_address"),))], 30)
        self.assertEqual(after[("webrtcstack_websocket_register_timeouts_total", ())], 300)
        self.assertEqual(after[("webrtcstack_websocket_slow_readers_closed_total", ())], 3000)
        self.assertEqual(after[("webrtcstack_websocket_refused_origins_total", ())], 15)

    def test_no_label_names_a_user_or_address(self) -> None:
        """Only fixed, low-cardinality label names appear."""
        self.counters.allocations_active[("ipv6", "tls")] = 1
        names = {label for (_, labels) in samples(render(self.registry)) for label, _ in labels}
        self.assertLessEqual(names, {"family", "transport", "direction", "method", "result", "reason", "quota",
                                     "outcome", "protocol", "state", "version", "limit", "event"})

    def test_process_metrics_included(self) -> None:
        """The default registry also carries the process collector's metrics."""
        text = render(make_registry(self.runtime)).decode()
        self.assertIn("process_open_fds", text)

    def test_status_and_healthz(self) -> None:
        """/status is JSON with uptime and counts; /healthz is 200 while running and 503 while draining."""
        site = build_ops_site(self.runtime, self.registry)
        self.runtime.state = "running"
        self.counters.allocations_active[("ipv4", "udp")] = 4
        self.clock.advance(12)
        code, body = get(site, b"/status")
        status = json.loads(body)
        self.assertEqual((status["allocations"], status["rooms"], status["clients"], status["websockets"]), (4, 2, 3, 3))
        self.assertEqual(status["uptime_s"], 12)
        self.assertEqual(get(site, b"/healthz"), (200, b"ok\n"))
        self.runtime.state = "draining"
        self.assertEqual(get(site, b"/healthz"), (503, b"draining\n"))
        code, body = get(site, b"/metrics")
        self.assertIn(b'webrtcstack_state{state="draining"} 1.0', body)
