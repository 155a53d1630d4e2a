"""This node's lease in Redis, and the cluster as the lease renewals see it.

:class:`ClusterNode` renews the node's lease every ``renew_seconds`` with
one script call (one round trip) that also returns every live node and its
record; ``/status`` and ``/healthz`` read that view.  The timing decisions
(when to renew, when the node must fence itself) are
:class:`~webrtcstack.cluster.lease.NodeLease`'s.

Keys (all under ``[redis] key_prefix``):

- ``node:<id>``: the lease; its value is the node's incarnation; expires
  after ``lease_seconds`` unless renewed;
- ``node:<id>:info``: the node's record (JSON: URLs, load, pid), same expiry;
- ``nodes``: a sorted set of node ids scored by lease expiry (ms, Redis
  time); entries lapsed for ten lease lifetimes are pruned by any renewal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from webrtcstack.cluster.client import RedisClient, RedisUnavailable, Script
from webrtcstack.cluster.lease import NodeLease

__all__ = ["ClusterNode", "RENEW_SCRIPT"]

log = Logger()

#: KEYS: lease, info, nodes index.  ARGV: incarnation, previous incarnation,
#: lease ms, record JSON, node id, key prefix.  Returns {0, holder} when
#: another live incarnation holds the id, else {1, now_ms, {id, expiry, record, ...}
#: for every live node, {ids of nodes whose lease lapsed}}.
RENEW_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and cur ~= ARGV[2] then
  return {0, cur}
end
local ms = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ms)
redis.call('SET', KEYS[2], ARGV[4], 'PX', ms)
redis.call('ZADD', KEYS[3], now + ms, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 10 * ms)
local live = redis.call('ZRANGEBYSCORE', KEYS[3], now, '+inf', 'WITHSCORES')
local nodes = {}
for i = 1, #live, 2 do
  nodes[#nodes + 1] = live[i]
  nodes[#nodes + 1] = live[i + 1]
  nodes[#nodes + 1] = redis.call('GET', ARGV[6] .. 'node:' .. live[i] .. ':info') or ''
end
return {1, now, nodes, redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. now)}
"""


class ClusterNode:
    """Keeps this node's lease and the view of live nodes (see the module docstring).

    :param client: the command connection.
    :param lease: the sans-IO lease state.
    :param prefix: ``[redis] key_prefix``.
    :param record: returns this node's record (URLs, load) at each renewal.
    :param on_conflict: called once if another live node holds this node's id.
    """

    def __init__(self, client: RedisClient, lease: NodeLease, reactor: Any, *, prefix: str,
                 record: Callable[[], dict[str, Any]], on_conflict: Callable[[str], Any] | None = None) -> None:
        self.client = client
        self.lease = lease
        self.reactor = reactor
        self.prefix = prefix
        self.record = record
        self.on_conflict = on_conflict
        #: node id -> {"expires_ms", "record"} of every live node, as of the last renewal
        self.nodes: dict[str, dict[str, Any]] = {}
        #: Redis's clock (ms) at the last renewal, and ours then
        self.redis_now_ms = 0
        #: the shared rooms (:class:`webrtcstack.cluster.rooms.ClusterRooms`) when the web side runs
        self.rooms: Any = None
        #: set when another live node holds our id (the node must not serve)
        self.conflict = ""
        #: called with :meth:`not_ready_reason` whenever it changes ("" when the node becomes ready)
        self.on_readiness: list[Callable[[str], Any]] = []
        self._reported = "not started"
        #: called with :attr:`nodes` after each renewal (the TURN view, webrtcstack.cluster.turnview)
        self.on_nodes: list[Callable[[dict[str, dict[str, Any]]], Any]] = []
        self.renewals = 0
        self.renew_failures = 0
        self._timer: Any = None
        self._running = False
        self._in_flight = False
        client.on_up.append(self._connected)
        client.on_down.append(self.check_readiness)

    def key(self, *parts: str) -> str:
        """A key under the prefix."""
        return self.prefix + ":".join(parts)

    @property
    def ready(self) -> bool:
        """Whether the node may serve: Redis is up, the lease is held, and the id is ours."""
        return not self.conflict and self.client.up and self.lease.held(self.reactor.seconds())

    def not_ready_reason(self) -> str:
        """Why :attr:`ready` is false, for /healthz ("" when ready)."""
        if self.conflict:
            return self.conflict
        if not self.client.up:
            return f"redis unavailable: {self.client.last_error or 'connecting'}"
        if not self.lease.held(self.reactor.seconds()):
            return "node lease not held yet"
        return ""

    def check_readiness(self) -> None:
        """Tell :attr:`on_readiness` if :meth:`not_ready_reason` changed since last time."""
        reason = self.not_ready_reason()
        if reason != self._reported:
            self._reported = reason
            for listener in list(self.on_readiness):
                listener(reason)

    def start(self) -> None:
        self._running = True
        self.client.start()
        self._schedule(self.lease.renew_s)

    def stop(self) -> defer.Deferred:
        """Stop renewing, give the lease back (so the others see this node go at once), close."""
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        d: defer.Deferred
        if self.client.up and not self.conflict:
            d = self.client.execute("EVAL", RELEASE_SCRIPT, 3, self.key("node", self.lease.node_id),
                                    self.key("node", self.lease.node_id, "info"), self.key("nodes"),
                                    self.lease.incarnation, self.lease.node_id)
            d.addErrback(lambda _: None)
        else:
            d = defer.succeed(None)
        d.addCallback(lambda _: self.client.stop())
        return d

    def status(self) -> dict[str, Any]:
        """The cluster as this node sees it (for /status)."""
        now_ms = self.redis_now_ms
        return {
            "node_id": self.lease.node_id,
            "incarnation": self.lease.incarnation,
            "redis": self.client.url.display(),
            "redis_up": self.client.up,
            "ready": self.ready,
            "lease_age_s": None if self.lease.renewed_at is None else round(self.lease.age(self.reactor.seconds()) or 0.0, 3),
            "redis_commands": self.client.round_trips,
            "messages_sent": self.rooms.sent if self.rooms is not None else 0,
            "messages_received": self.rooms.received if self.rooms is not None else 0,
            "reaped_nodes": self.rooms.reaped if self.rooms is not None else 0,
            "nodes": [{"node_id": node_id, "lease_left_s": round((info["expires_ms"] - now_ms) / 1000.0, 3),
                       **info["record"]} for node_id, info in sorted(self.nodes.items())],
        }

    # -- internals -----------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if not self._running:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = self.reactor.callLater(delay, self._renew)

    def _connected(self) -> None:
        self._renew()

    def _renew(self) -> None:
        self._schedule(self.lease.renew_s)
        if self._in_flight or self.conflict or not self.client.up:
            return
        now = self.reactor.seconds()
        if self.lease.fence_if_lapsed(now):
            log.warn("cluster: node {node} could not renew its lease for over {lease} s; it may have been "
                     "declared dead, so it comes back as a new incarnation ({inc})",
                     node=self.lease.node_id, lease=self.lease.lease_s, inc=self.lease.incarnation)
        self._in_flight = True
        d = self._call(now)
        d.addCallbacks(self._renewed, self._failed, callbackArgs=(now,))
        d.addBoth(self._done)

    def _done(self, result: Any) -> None:
        self._in_flight = False
        self.check_readiness()

    def _call(self, now: float) -> defer.Deferred:
        lease = self.lease
        keys = (self.key("node", lease.node_id), self.key("node", lease.node_id, "info"), self.key("nodes"))
        args = (lease.incarnation, lease.previous, int(lease.lease_s * 1000),
                json.dumps(dict(self.record(), pid=os.getpid(), incarnation=lease.incarnation)), lease.node_id, self.prefix)
        return _RENEW(self.client, keys, args)

    def _renewed(self, reply: Any, now: float) -> None:
        if not reply or reply[0] == 0:
            holder = reply[1].decode() if reply and isinstance(reply[1], bytes) else "?"
            self.conflict = (f"[redis] node_id {self.lease.node_id!r} is held by another live node "
                             f"(incarnation {holder}); give each process its own node_id")
            log.critical("cluster: {why}", why=self.conflict)
            if self.on_conflict is not None:
                self.on_conflict(self.conflict)
            return
        first = self.lease.renewed_at is None
        self.lease.renewed(now)
        self.renewals += 1
        self.redis_now_ms = int(reply[1])
        nodes: dict[str, dict[str, Any]] = {}
        items = reply[2]
        for i in range(0, len(items) - 2, 3):
            try:
                record = json.loads(items[i + 2] or b"{}")
            except ValueError:
                record = {}
            nodes[items[i].decode()] = {"expires_ms": int(float(items[i + 1])), "record": record}
        self.nodes = nodes
        for listener in self.on_nodes:
            listener(nodes)
        if first:
            log.info("cluster: node {node} holds its lease (incarnation {inc}); {count} live node(s)",
                     node=self.lease.node_id, inc=self.lease.incarnation, count=len(nodes))
        if self.rooms is not None:
            if first:
                # Sockets held before a lapse are checked against the records (kept or closed),
                # and what an earlier life of this node left behind is cleared.
                self.rooms.after_claim(self.lease.incarnation)
            for dead in reply[3]:
                self.rooms.reap(dead.decode())

    def _failed(self, failure: Any) -> None:
        self.renew_failures += 1
        if not failure.check(RedisUnavailable):
            log.warn("cluster: lease renewal failed: {error}", error=failure.getErrorMessage())


#: KEYS: lease, info, nodes index.  ARGV: incarnation, node id.  Deletes the lease if it is ours.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 1
end
return 0
"""

_RENEW = Script(RENEW_SCRIPT)
