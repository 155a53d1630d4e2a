"""The sessions admin API on the metrics listener: coturn's telnet CLI, done safely.

``GET /admin/sessions`` lists this process's TURN allocations (user, client
and relayed addresses, peers, bytes each way, age) and rooms (members, and
whether each has a signaling socket here).  ``DELETE /admin/sessions/ID``
ends one:

- ``a17``: an allocation (its relays close, its quotas are freed; a client
  that refreshes gets 437 and must allocate again);
- ``room/ROOM/CLIENT``: a room member (the others get ``bye``, its socket
  closes, it leaves the room);
- ``room/ROOM``: every member of a room;
- ``socket/ROOM/CLIENT``: only the member's signaling socket is closed; it
  stays in the room for the grace period, so its page reconnects and
  registers again (what a dropped connection does: for trying clients'
  reconnection, or moving a client off this node).

Every request needs ``Authorization: Bearer <token>``, the token kept in
``<state dir>/admin-token`` (mode 0600, made on first start; see
:mod:`webrtcstack.state`), compared in constant time.  The metrics listener
is on loopback by default.  Every call is logged with the caller's address:
listings at info, ends and refusals as warnings.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from webrtcstack.ops.runtime import StackRuntime

log = Logger()

__all__ = ["AdminResource"]


class AdminResource(resource.Resource):
    """``/admin/…`` (see the module docstring).

    :param token: the bearer token; None turns the API off (503).
    """

    isLeaf = True

    def __init__(self, runtime: StackRuntime, token: str | None) -> None:
        super().__init__()
        self.runtime = runtime
        self.token = token

    def render(self, request: IRequest) -> Any:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        peer = str(getattr(request.getClientAddress(), "host", "?"))
        if self.token is None:
            request.setResponseCode(503)
            return _json({"error": "the admin API is off: the stack could not keep an admin token in its state "
                                   "directory"})
        given = request.getHeader(b"authorization") or b""
        if not hmac.compare_digest(given, b"Bearer " + self.token.encode()):
            log.warn("admin: refused {method} {path} from {peer}: {why}", method=request.method.decode("latin-1"),
                     path=request.path.decode("latin-1"), peer=peer, why="bad token" if given else "no token")
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Bearer realm="webrtcstack admin"')
            return _json({"error": "a bearer token is needed: the one in <state dir>/admin-token"})
        parts = [p.decode("utf-8", "replace") for p in request.postpath if p]
        if parts == ["sessions"] and request.method in (b"GET", b"HEAD"):
            return self._list(peer)
        if len(parts) >= 2 and parts[0] == "sessions" and request.method in (b"DELETE", b"POST"):
            return self._end(request, "/".join(parts[1:]), peer)
        request.setResponseCode(404 if request.method in (b"GET", b"HEAD", b"DELETE", b"POST") else 405)
        return _json({"error": "GET /admin/sessions, or DELETE /admin/sessions/ID"})

    def _list(self, peer: str) -> bytes:
        rt = self.runtime
        now = rt.clock.seconds()
        engine = rt.turn_engine
        allocations = engine.describe_allocations(now) if engine is not None else []
        rooms = [room for hub in rt.hubs if hub.rooms is not None for room in hub.describe_rooms(now=now)]
        log.info("admin: {peer} listed sessions ({allocations} allocations, {rooms} rooms)", peer=peer,
                 allocations=len(allocations), rooms=len(rooms))
        return _json({"allocations": allocations, "rooms": rooms,
                      "scope": "this process" + (" (TURN workers list their own)" if rt.turn_workers else "")})

    def _end(self, request: IRequest, session_id: str, peer: str) -> Any:
        rt = self.runtime
        if session_id.startswith("socket/"):
            room_id, _, client_id = session_id[len("socket/"):].partition("/")
            if not self._drop_socket(room_id, client_id):
                request.setResponseCode(404)
                return _json({"error": f"no signaling socket of {room_id}/{client_id} on this node"})
            log.warn("admin: {peer} closed the signaling socket of {room}/{client}", peer=peer, room=room_id,
                     client=client_id)
            return _json({"ended": [session_id]})
        if session_id.startswith("room/"):
            room_id, _, client_id = session_id[len("room/"):].partition("/")
            d = self._kick(room_id, client_id)

            def done(ended: list[str]) -> None:
                if not ended:
                    request.setResponseCode(404)
                    request.write(_json({"error": f"no member {session_id}"}))
                else:
                    log.warn("admin: {peer} ended {what}", peer=peer,
                             what=", ".join(f"room/{room_id}/{c}" for c in ended))
                    request.write(_json({"ended": [f"room/{room_id}/{c}" for c in ended]}))
                request.finish()

            def failed(failure: Any) -> None:
                request.setResponseCode(503)
                request.write(_json({"error": failure.getErrorMessage()}))
                request.finish()

            d.addCallbacks(done, failed)
            return server.NOT_DONE_YET
        engine = rt.turn_engine
        ended = engine.handle_end(session_id, now=rt.clock.seconds()) if engine is not None else None
        if ended is None:
            request.setResponseCode(404)
            return _json({"error": f"no allocation {session_id} (ids look like a17; room members like room/ROOM/CLIENT)"})
        log.warn("admin: {peer} ended allocation {id} (user {user}, client {client}, relayed {relayed})", peer=peer,
                 id=session_id, user=ended["user"], client=ended["client"], relayed=" ".join(ended["relayed"]))
        return _json({"ended": [session_id], "allocation": ended})

    def _drop_socket(self, room_id: str, client_id: str) -> bool:
        """Close a member's socket on this node, after the hub has let go of it (so nothing is sent to it after)."""
        for runner in self.runtime.hub_runners:
            peer = runner.hub.peer(room_id, client_id)
            conn = getattr(peer, "conn", None)
            if conn is None or not hasattr(conn, "dropConnection"):
                continue
            if runner.cluster is None:  # with [redis] the socket's own close goes through the room's lock
                if runner.sockets.get((room_id, client_id)) is conn:
                    del runner.sockets[(room_id, client_id)]
                runner.apply(runner.hub.handle_disconnect(room_id, client_id, conn, now=runner.now()))
                runner.rearm()
            conn.dropConnection(abort=True)
            return True
        return False

    @defer.inlineCallbacks
    def _kick(self, room_id: str, client_id: str) -> Any:
        """Kick one member, or every member of the room when ``client_id`` is empty; the ids ended."""
        ended: list[str] = []
        for runner in self.runtime.hub_runners:
            hub = runner.hub
            if hub.rooms is None:
                continue
            room = hub.storage.get_room(room_id)
            clients = [client_id] if client_id else (list(room.members) if room is not None else [])
            for client in clients:
                result, effects = yield runner.in_room(
                    room_id, lambda c=client: hub.handle_kick(room_id, c, now=runner.now()))
                runner.apply(effects)
                runner.rearm()
                if result.value == "SUCCESS":
                    ended.append(client)
        return ended


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode() + b"\n"
