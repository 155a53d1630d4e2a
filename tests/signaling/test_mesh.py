"""Group calls (mesh rooms): presence, addressed messages, the server's ``from`` stamp, inboxes, limits.

The extension of docs/rooms.md, driven through the hub and real sessions
(sans-IO, no reactor).  apprtc's two-person rooms must see none of it.
"""

from __future__ import annotations

import json

from twisted.trial import unittest

from webrtcstack.rooms.model import Result, RoomRegistry
from webrtcstack.rooms.storage import MemoryStorage
from webrtcstack.signaling.hub import Deliver, Disconnect, Reply, SignalingHub, SignalingSession
from webrtcstack.signaling.messages import Errors, envelope


def frame(**kw: str) -> bytes:
    return json.dumps(kw).encode()


def decoded(effects: list) -> list[tuple[str, dict]]:
    """(recipient, the frame as JSON) for each Deliver."""
    return [(e.client_id, json.loads(e.frame)) for e in effects if isinstance(e, Deliver)]


class MeshTests(unittest.TestCase):
    def setUp(self) -> None:
        ids = iter("ABCDEFGH")
        self.storage = MemoryStorage()
        self.rooms = RoomRegistry(self.storage, capacity=4, make_client_id=lambda: next(ids))
        self.hub = SignalingHub(self.storage, rooms=self.rooms, register_timeout_s=10, max_queued=3,
                                max_queued_bytes=10_000)
        self.sessions: dict[str, SignalingSession] = {}

    def join(self, now: float = 0) -> str:
        result = self.hub.handle_join("g", mesh=True, now=now)
        self.assertEqual(result.result, Result.SUCCESS)
        return result.client_id

    def register(self, cid: str, now: float = 0) -> list:
        session = self.sessions[cid] = SignalingSession(self.hub, "c" + cid, now=now)
        return session.handle_frame(frame(cmd="register", roomid="g", clientid=cid), now=now)

    def send(self, cid: str, msg: str, to: str | None = None, now: float = 0, **extra: str) -> list:
        fields = dict(cmd="send", msg=msg, **extra)
        if to is not None:
            fields["to"] = to
        return self.sessions[cid].handle_frame(frame(**fields), now=now)

    def test_members_and_joined(self) -> None:
        """A newcomer gets the members list; the others get joined, once (not again on a re-register)."""
        a = self.join()
        self.assertEqual(decoded(self.register(a)), [(a, {"msg": '{"type": "members", "ids": []}', "error": ""})])
        b = self.join()
        effects = self.register(b)
        self.assertEqual(decoded(effects), [
            (b, {"msg": json.dumps({"type": "members", "ids": [a]}), "error": ""}),
            (a, {"msg": json.dumps({"type": "joined", "id": b}), "error": ""}),
        ])
        # b's socket drops and comes back within the grace period: no second "joined".
        self.hub.handle_disconnect("g", b, "c" + b, now=1)
        effects = self.register(b, now=2)
        self.assertEqual([to for to, _ in decoded(effects)], [b])

    def test_addressed_message_is_stamped_and_cannot_be_forged(self) -> None:
        """send with to reaches that member only, with from set by the server; a from in the command is ignored."""
        a, b, c = self.join(), self.join(), self.join()
        for cid in (a, b, c):
            self.register(cid)
        effects = self.send(a, "offer-for-c", to=c, **{"from": b})
        self.assertEqual(decoded(effects), [(c, {"msg": "offer-for-c", "error": "", "from": a})])
        everyone = self.send(b, "hello all")
        self.assertEqual(sorted((to, f["from"]) for to, f in decoded(everyone)), [(a, b), (c, b)])

    def test_unknown_recipient_delivers_nothing(self) -> None:
        """A to naming someone not in the room (or oneself) is an error; nothing is delivered; the socket stays."""
        a, b = self.join(), self.join()
        self.register(a)
        self.register(b)
        for to in ("Z", a):
            self.assertEqual(self.send(a, "x", to=to), [Reply(envelope(error=Errors.UNKNOWN_RECIPIENT), False)])

    def test_inbox_while_away_delivered_once_in_order(self) -> None:
        """Frames for a member whose socket dropped wait in its inbox and arrive once, in order, on its re-register."""
        a, b = self.join(), self.join()
        self.register(a)
        self.register(b)
        self.hub.handle_disconnect("g", b, "c" + b, now=1)
        self.assertEqual(self.send(a, "one", to=b, now=2), [])
        self.assertEqual(self.send(a, "two", now=2), [])
        effects = self.register(b, now=3)
        self.assertEqual([f["msg"] for to, f in decoded(effects) if f.get("from") == a], ["one", "two"])
        self.assertEqual(self.hub.peer("g", b).inbox, [])
        self.hub.handle_disconnect("g", b, "c" + b, now=4)
        again = self.register(b, now=5)
        self.assertEqual([f for _, f in decoded(again) if "from" in f], [])

    def test_inbox_limit(self) -> None:
        """An inbox holds max_queued frames; the next send is refused as a whole (nothing half delivered)."""
        a, b, c = self.join(), self.join(), self.join()
        for cid in (a, b, c):
            self.register(cid)
        self.hub.handle_disconnect("g", b, "c" + b, now=1)
        for i in range(3):
            self.send(a, f"m{i}", to=b, now=1)
        refused = self.send(a, "to everyone", now=1)
        self.assertEqual(refused, [Reply(envelope(error=Errors.QUEUE_FULL), False)])
        self.assertEqual(len(self.hub.peer("g", b).inbox), 3)

    def test_left_on_leave_and_on_grace_expiry(self) -> None:
        """The others get left when a member leaves, and when its socket stays away past the grace period."""
        a, b, c = self.join(), self.join(), self.join()
        for cid in (a, b, c):
            self.register(cid)
        _, effects = self.hub.handle_leave("g", c, now=1)
        self.assertEqual(sorted(to for to, f in decoded(effects) if f["msg"] == json.dumps({"type": "left", "id": c})),
                         [a, b])
        self.hub.handle_disconnect("g", b, "c" + b, now=2)
        effects = self.hub.handle_timers(now=13)
        self.assertEqual(decoded(effects), [(a, {"msg": json.dumps({"type": "left", "id": b}), "error": ""})])
        self.assertEqual(list(self.storage.get_room("g").members), [a])

    def test_kick_in_a_group_says_left(self) -> None:
        a, b = self.join(), self.join()
        self.register(a)
        self.register(b)
        _, effects = self.hub.handle_kick("g", b, now=1)
        self.assertIn((a, {"msg": json.dumps({"type": "left", "id": b}), "error": ""}), decoded(effects))
        self.assertIn(Disconnect("g", b, "c" + b), effects)


class ApprtcRoomsUnchangedTests(unittest.TestCase):
    def test_two_person_rooms_see_no_extension(self) -> None:
        """In an apprtc room: no members frame, no presence, no from, and to is ignored as collider ignores keys."""
        ids = iter("AB")
        storage = MemoryStorage()
        hub = SignalingHub(storage, rooms=RoomRegistry(storage, capacity=4, make_client_id=lambda: next(ids)))
        a = hub.handle_join("p", now=0).client_id
        b = hub.handle_join("p", now=0).client_id
        sa, sb = SignalingSession(hub, "ca", now=0), SignalingSession(hub, "cb", now=0)
        self.assertEqual(sa.handle_frame(frame(cmd="register", roomid="p", clientid=a), now=0), [])
        self.assertEqual(sb.handle_frame(frame(cmd="register", roomid="p", clientid=b), now=0), [])
        effects = sa.handle_frame(frame(cmd="send", msg="hi", to="nobody"), now=0)
        self.assertEqual(effects, [Deliver("p", b, envelope("hi"))])
