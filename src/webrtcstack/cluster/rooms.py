"""Rooms and signaling shared through Redis: one room changed at a time, deliveries to other nodes' inboxes.

How a node changes a room (:meth:`ClusterRooms.run`):

1. one script call locks the room (a short ``SET NX PX`` lock) and returns
   its record and the number of rooms in the cluster;
2. the record is loaded into :class:`~webrtcstack.cluster.records.ClusterStorage`
   and the unchanged room registry and hub run the operation (the same rules
   as a single process);
3. one script call writes the record back (or deletes it), appends each
   delivery for a socket on another node to that node's inbox stream, and
   releases the lock — all or nothing, and only while the lock is still ours.

So a change costs two round trips whatever it is (``/join``, a message to
a peer on another node, a register), and two nodes racing for one room take
turns.  Operations on one room in one node run in order (a local lock), so a
client's messages keep their order.

Each node reads its inbox (``inbox:<node id>``, a stream bounded with
``MAXLEN ~``) on a connection of its own with ``XREAD BLOCK`` from the last
id it saw: a dropped connection is re-made and reading resumes where it
stopped, so nothing is lost or read twice while Redis stays up.

Keys, under ``[redis] key_prefix``: ``room:<id>`` (the record; expires with
the room), ``lock:<id>`` (a few seconds at most), ``rooms`` (room ids scored
by expiry, for the cluster-wide room count), ``inbox:<node id>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from webrtcstack.cluster.client import RedisClient, RedisUnavailable, Script
from webrtcstack.cluster.records import ClusterStorage, dump, load, token_node
from webrtcstack.signaling.hub import Deliver, Disconnect, Effect

__all__ = ["ClusterRooms", "ClusterBusy"]

log = Logger()

#: KEYS: lock, room, rooms index.  ARGV: lock token, lock ms.
#: {1, record or "", rooms in the cluster} when locked; {0, ms the lock still lives} when not.
LOCK = Script("""
local cur = redis.call('GET', KEYS[1])
if not cur or string.sub(cur, 1, 5) == 'done:' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  return {1, redis.call('GET', KEYS[2]) or '', redis.call('ZCARD', KEYS[3])}
end
return {0, redis.call('PTTL', KEYS[1])}
""")

#: KEYS: lock, room, rooms index, this node's room set.  ARGV: lock token, record ("" deletes), record ms,
#: room id, inbox MAXLEN, "1" if this node holds a socket in the room now, then (inbox key, entry) pairs.
#: 1 when written; 0 when the lock was no longer ours.  The lock key is left as "done:<token>" for a
#: few seconds, so a node that lost the reply can tell whether the change was made.
COMMIT = Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[6] == '1' then
  redis.call('SADD', KEYS[4], ARGV[4])
  redis.call('PEXPIRE', KEYS[4], 86400000)
else
  redis.call('SREM', KEYS[4], ARGV[4])
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[4])
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[4])
end
local i = 7
while i < #ARGV do
  redis.call('XADD', ARGV[i], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[i + 1])
  i = i + 2
end
redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'PX', 10000)
return 1
""")

#: KEYS: room, this node's send marks.  ARGV: "<version>|", record ms, inbox MAXLEN, room id, send number,
#: then (inbox key, entry) pairs.  Appends the entries only if the room's record is still that version
#: (1), else nothing (0).  The send number is kept per room for a minute, so a node that lost the reply
#: can tell whether the entries went out.
SEND = Script("""
if redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local i = 6
while i < #ARGV do
  redis.call('XADD', ARGV[i], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
redis.call('PEXPIRE', KEYS[2], 60000)
return 1
""")

#: KEYS: lock.  ARGV: lock token.  Releases the lock if it is still ours.
UNLOCK = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

#: KEYS: reap lock, the dead node's lease, its room set.  ARGV: token, lock ms.
#: {1, rooms} when this node is to reap it; {0} when it is alive again or another node reaps it.
REAP_LOCK = Script("""
if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
return {1, redis.call('SMEMBERS', KEYS[3])}
""")

#: KEYS: reap lock, room set, inbox, nodes index, info.  ARGV: token, node id.  The node is gone for good.
REAP_DONE = Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[5])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
""")

#: how long one node may take to reap a dead one before another may
REAP_MS = 30000

#: how long a room lock lives if its node dies holding it
LOCK_MS = 2000
#: how long a node waits for a room another node has locked before giving up
LOCK_WAIT_S = 5.0
#: how long a change waits for a dropped Redis connection to come back before it fails
RECONNECT_WAIT_S = 5.0
#: entries an inbox keeps at most (approximately)
INBOX_MAXLEN = 100000
#: a changed record up to this size travels with the invalidation to the other nodes in the room
INLINE_RECORD_BYTES = 4096


def _versioned(raw: bytes | str | None) -> tuple[int, str]:
    """A stored record ``<version>|<json>`` as (version, json); (0, "") for none."""
    if not raw:
        return 0, ""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    head, sep, body = text.partition("|")
    if not sep or not head.isdigit():
        return 0, text  # written before records had versions
    return int(head), body


class ClusterBusy(Exception):
    """The room stayed locked by another node too long, or the lock was lost mid-change."""


class ClusterRooms:
    """This node's side of the shared rooms (see the module docstring).

    :param client: the command connection.
    :param inbox_client: a second connection, for the blocking inbox reads.
    :param node_id: this node's id; :param incarnation: returns its current incarnation.
    :param runner: the hub runner (``hub``, ``sockets``, ``apply``).
    :param storage: the :class:`ClusterStorage` the hub and registry were built on.
    """

    def __init__(self, client: RedisClient, inbox_client: RedisClient, *, node_id: str,
                 incarnation: Callable[[], str], runner: Any, storage: ClusterStorage, prefix: str,
                 reactor: Any) -> None:
        self.client = client
        self.inbox_client = inbox_client
        self.node_id = node_id
        self.incarnation = incarnation
        self.runner = runner
        self.storage = storage
        self.prefix = prefix
        self.reactor = reactor
        #: socket token -> this node's socket
        self.tokens: dict[str, Any] = {}
        self._serial = 0
        self._locks: dict[str, defer.DeferredLock] = {}
        self._reading = False
        self._last_id = "$"
        self.inbox_key = self.key("inbox", node_id)
        #: deliveries sent to other nodes' inboxes, and read from ours
        self.sent = 0
        self.received = 0
        #: inbox entries for a socket no longer here (closed meanwhile)
        self.undeliverable = 0
        #: room changes that found the room locked by another node at first
        self.lock_waits = 0
        #: dead nodes this node reaped
        self.reaped = 0
        #: room records changed (committed) by this node
        self.changes = 0
        self._reaping: set[str] = set()
        #: the sockets the runner held when it stopped (released by :meth:`stop`)
        self.leaving: list[tuple[tuple[str, str], Any]] = []
        #: room id -> (version, record, its Room, its Channel) of rooms where this node holds sockets, for
        #: the one-round-trip send (the objects are reused while operations leave them unwritten)
        self._cache: dict[str, tuple[int, str, Any, Any]] = {}
        self._send_seq = 0
        #: messages sent on the one-round-trip path (a cached record still current)
        self.fast_sends = 0
        inbox_client.on_up.append(self._start_reading)
        client.on_up.append(self._check_restart)
        #: Redis's run id at the last connection (a new one means Redis restarted, empty)
        self._redis_run_id: str | None = None
        #: rooms re-written from this node's sockets after a Redis restart
        self.reasserted = 0

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- sockets -------------------------------------------------------------

    def token_of(self, conn: object) -> str:
        """The token stored for a socket (made on first use); strings (other nodes' tokens) stay as they are."""
        if isinstance(conn, str):
            return conn
        token = getattr(conn, "conn_token", None)
        if token is None:
            self._serial += 1
            token = f"{self.node_id}/{self.incarnation()}/{self._serial}"
            conn.conn_token = token  # type: ignore[attr-defined]
            self.tokens[token] = conn
        return str(token)

    def resolve(self, token: str) -> object:
        """This node's socket for a token, or the token (another node's, or a socket gone)."""
        return self.tokens.get(token, token)

    def forget(self, conn: object) -> None:
        """A socket closed: its token no longer resolves."""
        token = getattr(conn, "conn_token", None)
        if token is not None:
            self.tokens.pop(token, None)

    # -- changing a room -----------------------------------------------------

    @defer.inlineCallbacks
    def run(self, room_id: str, operation: Callable[[], tuple[Any, list[Effect]]],
            speculative: tuple[Callable[[], Any], Callable[[Any], None]] | None = None) -> Any:
        """Run ``operation`` (the hub or registry call) on the room's shared record; its value and effects.

        Deliveries to sockets on other nodes are already on their way when
        this fires; the caller applies the effects (the local ones act).

        :param speculative: ``(save, restore)`` for an operation that may be
            tried on this node's cached copy of the record first (a message
            from a registered socket): if it leaves the record as it was, its
            deliveries go out in one round trip (none when every recipient is
            on this node); else ``restore(save())`` undoes its side effects and
            it runs again under the lock.
        :raises RedisUnavailable: Redis is out of reach (nothing changed).
        :raises ClusterBusy: see the class.
        """
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = defer.DeferredLock()
        yield lock.acquire()
        try:
            result = None
            if speculative is not None and room_id in self._cache:
                result = yield self._run_cached(room_id, operation, speculative)
            if result is None:
                result = yield self._run_locked(room_id, operation)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(room_id, None)
            if not self._count_due:
                # Sockets of one node may be removed by another node's change: the hub's count
                # of open sockets is this node's own, recounted once the caller applied the effects.
                self._count_due = True
                self.reactor.callLater(0, self._count_sockets)
        return result

    _count_due = False

    def _count_sockets(self) -> None:
        self._count_due = False
        self.runner.hub.counters.open_ws = len(self.runner.sockets)

    def _remote_entries(self, room_id: str, effects: list[Effect], peers: dict[str, Any]) -> list[object]:
        """(inbox key, entry) pairs for the effects that act on other nodes' sockets."""
        args: list[object] = []
        for effect in effects:
            entry = None
            if type(effect) is Deliver:
                peer = peers.get(effect.client_id)
                if peer is not None and isinstance(peer.conn, str):
                    entry = {"k": "d", "r": effect.room_id, "c": effect.client_id, "t": peer.conn, "f": effect.frame}
            elif type(effect) is Disconnect and isinstance(effect.conn, str):
                entry = {"k": "c", "t": effect.conn}
            if entry is not None:
                args += [self.key("inbox", token_node(entry["t"])), json.dumps(entry, separators=(",", ":"))]
        return args

    @defer.inlineCallbacks
    def _run_cached(self, room_id: str, operation: Callable[[], tuple[Any, list[Effect]]],
                    speculative: tuple[Callable[[], Any], Callable[[Any], None]]) -> Any:
        """The one-round-trip path (see :meth:`run`); None when the operation must run under the lock."""
        version, text, room, channel = self._cache[room_id]
        saved = speculative[0]()
        self.storage.begin(room_id, room, channel, self.storage.cluster_rooms)
        try:
            value, effects = operation()
        finally:
            dirty = self.storage.dirty
            room_after, channel_after = self.storage.end()
        if dirty:  # it changes the record: forget the (now changed) copy, run under the lock
            self._cache.pop(room_id, None)
            speculative[1](saved)
            return None
        pairs = self._remote_entries(room_id, effects, channel.peers if channel is not None else {})
        if not pairs:  # every recipient is here; another node's change would have invalidated the copy
            self.fast_sends += 1
            return value, effects
        self._send_seq += 1
        seq = str(self._send_seq)
        keys = (self.key("room", room_id), self.key("sent", self.node_id))
        args = (f"{version}|", self._ttl_ms(room_after, self.runner.now()), INBOX_MAXLEN, room_id, seq, *pairs)
        while True:
            try:
                sent = yield SEND(self.client, keys, args)
                break
            except RedisUnavailable:
                yield self.client.when_up(RECONNECT_WAIT_S)
                mark = yield self.client.execute("HGET", keys[1], room_id)
                if mark == seq.encode():
                    sent = 1  # it went out; only the reply was lost
                    break
        if sent != 1:  # the record changed elsewhere: forget the copy, run under the lock
            self._cache.pop(room_id, None)
            speculative[1](saved)
            return None
        self.fast_sends += 1
        self.sent += len(pairs) // 2
        return value, effects

    @defer.inlineCallbacks
    def _run_locked(self, room_id: str, operation: Callable[[], tuple[Any, list[Effect]]]) -> Any:
        keys = (self.key("lock", room_id), self.key("room", room_id), self.key("rooms"))
        token = f"{self.node_id}/{self.incarnation()}/{id(operation)}"
        deadline = self.reactor.seconds() + LOCK_WAIT_S
        waited = False
        while True:
            try:
                reply = yield LOCK(self.client, keys, (token, LOCK_MS))
            except RedisUnavailable:
                # A dropped connection is re-made within a few back-off steps: wait for it (bounded).
                yield self.client.when_up(RECONNECT_WAIT_S)
                continue
            if reply[0] == 1:
                break
            if not waited:
                self.lock_waits += 1
                waited = True
            if self.reactor.seconds() >= deadline:
                raise ClusterBusy(f"room {room_id} stayed locked by another node for {LOCK_WAIT_S} s")
            yield task.deferLater(self.reactor, min(0.02, max(0.001, int(reply[1]) / 1000.0)), lambda: None)
        version, text = _versioned(reply[1])
        try:
            room, channel = load(room_id, text, self.resolve)
        except (ValueError, KeyError, TypeError) as e:
            log.error("cluster: the record of room {room} is not ours ({error}); starting it afresh",
                      room=room_id, error=str(e))
            room = channel = None
        hub = self.runner.hub
        now = self.runner.now()
        self.storage.begin(room_id, room, channel, int(reply[2]))
        try:
            effects: list[Effect] = []
            if channel is not None:
                hub.arm_overdue(channel, now)
                effects += hub.handle_timers(now=now, only_room=room_id)
            value, more = operation()
            effects += more
        finally:
            room_after, channel_after = self.storage.end()
        record = dump(room_after, channel_after, self.token_of)
        ttl_ms = self._ttl_ms(room_after, now)
        holds = channel_after is not None and any(
            p.conn is not None and not isinstance(p.conn, str) for p in channel_after.peers.values())
        changed = record != text
        if changed:
            version += 1
        stored = f"{version}|{record}" if record else ""
        args: list[object] = [token, stored, ttl_ms, room_id, INBOX_MAXLEN, "1" if holds else "0"]
        peers = dict(channel.peers) if channel is not None else {}
        if channel_after is not None:
            peers.update(channel_after.peers)
        pairs = self._remote_entries(room_id, effects, peers)
        # Other nodes with sockets here drop their cached copy of the record.
        others = {token_node(p.conn) for p in peers.values() if isinstance(p.conn, str)} - {self.node_id}
        invalidate: list[object] = []
        if changed and others:
            # A small record travels with the invalidation, so the other node's next message on it
            # still takes one round trip (the send script checks the version all the same).
            notice = {"k": "i", "r": room_id, "t": ""}
            if record and len(record) <= INLINE_RECORD_BYTES:
                notice.update(v=version, x=record)
            text_notice = json.dumps(notice, separators=(",", ":"))
            for node in sorted(others):
                invalidate += [self.key("inbox", node), text_notice]
        written = yield self._commit(keys + (self.key("node", self.node_id, "rooms"),),
                                     tuple(args + pairs + invalidate), token)
        if written != 1:
            raise ClusterBusy(f"the lock on room {room_id} lapsed before the change was written")
        if holds and record:
            # The objects the operation left are the record just written: keep them for the next message.
            self._cache[room_id] = (version, record, room_after, channel_after)
        else:
            self._cache.pop(room_id, None)
        self.sent += len(pairs) // 2
        self.changes += 1
        return value, effects

    # -- dead nodes ----------------------------------------------------------

    def _gone_from(self, node_id: str) -> Callable[[object], bool]:
        """Which stored sockets are gone with ``node_id``: its tokens that do not load as a live socket here.

        A token of a socket this node still holds loads as the socket itself,
        so only the tokens of sockets that are gone stay strings.
        """
        return lambda conn: isinstance(conn, str) and token_node(conn) == node_id

    def reap(self, node_id: str) -> None:
        """A node's lease lapsed: if no other node does it, remove its clients from their rooms, then the node."""
        if node_id in self._reaping or node_id == self.node_id:
            return
        self._reaping.add(node_id)
        d = self._reap(node_id)
        d.addErrback(lambda f: log.warn("cluster: reaping node {node} failed: {error}", node=node_id,
                                        error=f.getErrorMessage()))
        d.addBoth(lambda _: self._reaping.discard(node_id))

    @defer.inlineCallbacks
    def _reap(self, node_id: str) -> Any:
        token = f"{self.node_id}/{self.incarnation()}/reap"
        locked = yield REAP_LOCK(self.client, (self.key("reap", node_id), self.key("node", node_id),
                                               self.key("node", node_id, "rooms")), (token, REAP_MS))
        if locked[0] != 1:
            return
        rooms = [r.decode() for r in locked[1]]
        for room_id in rooms:
            _, effects = yield self.run(room_id, lambda room_id=room_id: (
                None, self.runner.hub.handle_gone(room_id, self._gone_from(node_id), now=self.runner.now())))
            self.runner.apply(effects)
        yield REAP_DONE(self.client, (self.key("reap", node_id), self.key("node", node_id, "rooms"),
                                      self.key("inbox", node_id), self.key("nodes"), self.key("node", node_id, "info")),
                        (token, node_id))
        self.reaped += 1
        log.warn("cluster: node {node} stopped renewing its lease; its clients left {count} room(s)",
                 node=node_id, count=len(rooms))

    def after_claim(self, incarnation: str) -> None:
        """The lease is claimed (at start, or after a lapse): keep the sockets the records still name, close the rest."""
        d = self._after_claim(incarnation)
        d.addErrback(lambda f: log.warn("cluster: checking this node's sockets failed: {error}", error=f.getErrorMessage()))

    @defer.inlineCallbacks
    def _after_claim(self, incarnation: str) -> Any:
        runner = self.runner
        for (room_id, client_id), proto in list(runner.sockets.items()):
            def check(room_id: str = room_id, client_id: str = client_id) -> tuple[bool, list[Effect]]:
                channel = self.storage.get_channel(room_id)
                peer = channel.peers.get(client_id) if channel is not None else None
                return peer is not None and peer.conn is proto, []
            kept, _ = yield self.run(room_id, check)
            if not kept:  # reaped while this node was away: never resurrected
                runner.sockets.pop((room_id, client_id), None)
                proto.close_soon()
        # What an earlier life of this node (a crash, then a restart within the lease) left in rooms.
        members = yield self.client.execute("SMEMBERS", self.key("node", self.node_id, "rooms"))
        for raw in members or ():
            room_id = raw.decode()
            _, effects = yield self.run(room_id, lambda room_id=room_id: (
                None, runner.hub.handle_gone(room_id, self._gone_from(self.node_id), now=runner.now())))
            runner.apply(effects)

    @defer.inlineCallbacks
    def _commit(self, keys: tuple[object, ...], args: tuple[object, ...], token: str) -> Any:
        """COMMIT once, even across a dropped connection (the lock key tells whether it was made)."""
        while True:
            try:
                written = yield COMMIT(self.client, keys, args)
                return written
            except RedisUnavailable:
                yield self.client.when_up(RECONNECT_WAIT_S)
                state = yield self.client.execute("GET", keys[0])
                if state == f"done:{token}".encode():
                    return 1  # it was made; only the reply was lost
                if state != token.encode():
                    return 0  # the lock lapsed meanwhile: nothing was made
            except Exception:
                UNLOCK(self.client, keys[:1], (token,)).addErrback(lambda _: None)
                raise

    # -- Redis restarted -------------------------------------------------------

    def _check_restart(self) -> None:
        d = self.client.execute("INFO", "server")
        d.addCallback(self._run_id_seen)
        d.addErrback(lambda f: log.warn("cluster: could not read Redis's run id: {error}", error=f.getErrorMessage()))

    def _run_id_seen(self, info: bytes) -> Any:
        run_id = ""
        for line in info.decode("utf-8", "replace").splitlines():
            if line.startswith("run_id:"):
                run_id = line.split(":", 1)[1].strip()
        previous, self._redis_run_id = self._redis_run_id, run_id
        if previous is None or previous == run_id:
            return None
        log.warn("cluster: Redis restarted (run id {old} -> {new}); re-writing the rooms of this node's sockets",
                 old=previous[:8], new=run_id[:8])
        return self.reassert()

    @defer.inlineCallbacks
    def reassert(self) -> Any:
        """After Redis lost everything: put this node's sockets back into their rooms' records.

        What this node holds authoritatively is its own sockets: each room
        is re-created with them as members (the first one the initiator) and
        as registered clients, so calls whose clients are all on this node go
        on untouched, and a peer on another node is added by that node.
        """
        by_room: dict[str, list[tuple[str, object]]] = {}
        for (room_id, client_id), proto in list(self.runner.sockets.items()):
            by_room.setdefault(room_id, []).append((client_id, proto))
        self._cache.clear()
        hub = self.runner.hub
        for room_id, clients in sorted(by_room.items()):
            def put_back(room_id: str = room_id, clients: list[tuple[str, object]] = clients) -> tuple[None, list[Effect]]:
                return None, hub.handle_reclaim(room_id, clients, now=self.runner.now())
            try:
                yield self.run(room_id, put_back)
                self.reasserted += 1
            except Exception as e:  # noqa: BLE001 - one room's failure must not stop the others
                log.warn("cluster: room {room} could not be re-written: {error}", room=room_id, error=str(e))
        log.info("cluster: re-wrote {count} room(s) from this node's sockets", count=len(by_room))

    def _ttl_ms(self, room: Any, now: float) -> int:
        rooms = self.runner.hub.rooms
        if room is not None:
            return max(1000, int((room.expires_at - now) * 1000) + 60_000)
        ttl = rooms.room_ttl_s if rooms is not None else 86400
        return int(ttl * 1000)

    def peek(self, room_id: str) -> defer.Deferred:
        """The room's record as it is (no lock): a Deferred of (Room or None, Channel or None)."""
        d = self.client.execute("GET", self.key("room", room_id))
        d.addCallback(lambda raw: load(room_id, _versioned(raw)[1], self.resolve))
        return d

    # -- the inbox -----------------------------------------------------------

    def _start_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._read()

    def _read(self) -> None:
        d = self.inbox_client.execute("XREAD", "COUNT", 512, "BLOCK", 2000, "STREAMS", self.inbox_key, self._last_id)
        d.addCallbacks(self._entries, self._read_failed)

    def _entries(self, reply: Any) -> None:
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                self._last_id = entry_id.decode()
                try:
                    self._handle(json.loads(fields[1]))
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    log.warn("cluster: dropped an inbox entry that is not ours: {error}", error=str(e))
        self._read()

    def _read_failed(self, failure: Any) -> None:
        self._reading = False  # on_up starts it again
        if not failure.check(RedisUnavailable):
            log.warn("cluster: reading the inbox failed: {error}", error=failure.getErrorMessage())
            if self.inbox_client.up:
                self.reactor.callLater(1.0, self._start_reading)

    def _handle(self, entry: dict[str, Any]) -> None:
        if entry["k"] == "i":  # another node changed a room's record: the cached copy is stale
            self._refresh_cache(entry)
            return
        self.received += 1
        proto = self.tokens.get(entry["t"])
        if entry["k"] == "d":
            if proto is None or self.runner.sockets.get((entry["r"], entry["c"])) is not proto:
                self.undeliverable += 1
                return
            proto.deliver(entry["f"].encode("utf-8"))
        elif entry["k"] == "c" and proto is not None:
            proto.close_soon()

    def _refresh_cache(self, entry: dict[str, Any]) -> None:
        """Take the new record an invalidation carries as the cached copy (while this node holds a socket there)."""
        room_id = entry["r"]
        self._cache.pop(room_id, None)
        record, version = entry.get("x"), entry.get("v")
        if not isinstance(record, str) or not isinstance(version, int) or room_id in self._locks:
            return  # no record with it, or a change of ours is in flight: the next message loads it
        try:
            room, channel = load(room_id, record, self.resolve)
        except (ValueError, KeyError, TypeError):
            return
        if channel is not None and any(p.conn is not None and not isinstance(p.conn, str) for p in channel.peers.values()):
            self._cache[room_id] = (version, record, room, channel)

    def release_sockets(self) -> defer.Deferred:
        """Every socket this node holds leaves its room's record as a closed socket would (at stop)."""
        runner = self.runner
        ops = []
        for (room_id, client_id), proto in self.leaving or list(runner.sockets.items()):
            session = getattr(proto, "session", None)
            if session is None:
                continue
            d = self.run(room_id, lambda session=session: (None, session.handle_close(now=runner.now())))
            d.addCallback(lambda result: runner.apply(result[1]))
            d.addErrback(lambda f: log.warn("cluster: a socket could not leave its room at stop: {error}",
                                            error=f.getErrorMessage()))
            ops.append(d)
        return defer.DeferredList(ops)

    def stop(self) -> defer.Deferred:
        """Release this node's sockets, delete its inbox (nothing will read it), close both connections."""
        d = self.release_sockets()
        d.addCallback(lambda _: self.client.execute("DEL", self.inbox_key) if self.client.up else None)
        d.addErrback(lambda _: None)
        d.addCallback(lambda _: self.inbox_client.stop())
        return d
