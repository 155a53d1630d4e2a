"""The signaling hub: collider's rules, the room-server link, timers (no reactor)."""

from __future__ import annotations

import json

from twisted.internet import task
from twisted.trial import unittest

from webrtcstack.rooms.model import LOOPBACK_CLIENT_ID, Result, RoomRegistry
from webrtcstack.rooms.storage import MemoryStorage
from webrtcstack.signaling.hub import (
    LOOPBACK_SOCKET_CLIENT_ID, Deliver, Disconnect, SignalingError, SignalingHub,
)
from webrtcstack.signaling.messages import Errors, envelope
from webrtcstack.signaling.protocol import HubRunner


def delivered(effects, client_id=None):
    return [json.loads(e.frame)["msg"] for e in effects if type(e) is Deliver and (client_id is None or e.client_id == client_id)]


class ColliderTests(unittest.TestCase):
    """Without a room registry the hub behaves as collider."""

    def setUp(self) -> None:
        self.hub = SignalingHub(MemoryStorage(), register_timeout_s=10, max_queued=3, max_rooms=2)

    def test_register_no_reply(self) -> None:
        """Registering gives no effect and counts a socket."""
        self.assertEqual(self.hub.handle_register("r", "a", "ca", now=0), [])
        self.assertEqual((self.hub.counters.open_ws, self.hub.counters.total_ws), (1, 1))

    def test_send_alone_queues_then_flushes(self) -> None:
        """A message sent alone is queued on the sender and delivered, in order, when the other registers."""
        self.hub.handle_register("r", "a", "ca", now=0)
        self.assertEqual(self.hub.handle_send("r", "a", "1", now=0), [])
        self.hub.handle_send("r", "a", "2", now=0)
        effects = self.hub.handle_register("r", "b", "cb", now=1)
        self.assertEqual(delivered(effects, "b"), ["1", "2"])
        self.assertEqual(self.hub.peer("r", "a").queue, [])

    def test_send_direct(self) -> None:
        """With the other registered a message is delivered at once as a {msg, error} envelope."""
        self.hub.handle_register("r", "a", "ca", now=0)
        self.hub.handle_register("r", "b", "cb", now=0)
        effects = self.hub.handle_send("r", "a", '{"type":"bye"}', now=0)
        self.assertEqual(effects, [Deliver("r", "b", envelope('{"type":"bye"}'))])

    def test_queue_limit(self) -> None:
        """The message past max_queued fails with collider's text."""
        self.hub.handle_register("r", "a", "ca", now=0)
        for i in range(3):
            self.hub.handle_send("r", "a", str(i), now=0)
        e = self.assertRaises(SignalingError, self.hub.handle_send, "r", "a", "x", now=0)
        self.assertEqual(str(e), Errors.QUEUE_FULL)

    def test_capacity(self) -> None:
        """A third client gets Max room capacity reached, on register and on POST."""
        self.hub.handle_register("r", "a", "ca", now=0)
        self.hub.handle_post("r", "b", "m", now=0)
        e = self.assertRaises(SignalingError, self.hub.handle_register, "r", "c", "cc", now=0)
        self.assertEqual(str(e), Errors.ROOM_FULL)
        e = self.assertRaises(SignalingError, self.hub.handle_post, "r", "c", "m", now=0)
        self.assertEqual(str(e), Errors.ROOM_FULL)

    def test_duplicated_registration(self) -> None:
        """A client bound to a live socket cannot be registered by another."""
        self.hub.handle_register("r", "a", "ca", now=0)
        e = self.assertRaises(SignalingError, self.hub.handle_register, "r", "a", "other", now=0)
        self.assertEqual(str(e), Errors.DUPLICATED_REGISTRATION)

    def test_max_rooms(self) -> None:
        """Past max_rooms a new room is refused."""
        self.hub.handle_register("r1", "a", "c1", now=0)
        self.hub.handle_register("r2", "a", "c2", now=0)
        e = self.assertRaises(SignalingError, self.hub.handle_register, "r3", "a", "c3", now=0)
        self.assertEqual(str(e), Errors.TOO_MANY_ROOMS)

    def test_post_creates_placeholder_with_timeout(self) -> None:
        """A POST from an unknown client creates it unregistered; it is removed after the register timeout."""
        self.hub.handle_post("r", "a", "m", now=0)
        self.assertEqual(self.hub.next_deadline(), 10)
        self.assertEqual(self.hub.handle_timers(now=9.9), [])
        self.assertIsNotNone(self.hub.peer("r", "a"))
        self.hub.handle_timers(now=10)
        self.assertIsNone(self.hub.peer("r", "a"))
        self.assertEqual(self.hub.storage.channel_count(), 0)

    def test_post_delivers_to_registered(self) -> None:
        """A POST from a placeholder reaches a registered peer at once."""
        self.hub.handle_register("r", "b", "cb", now=0)
        self.assertEqual(delivered(self.hub.handle_post("r", "a", "hi", now=0), "b"), ["hi"])

    def test_disconnect_grace_and_reregister(self) -> None:
        """A closed socket leaves the client for the grace period; re-registering keeps it and delivers what was queued."""
        self.hub.handle_register("r", "a", "ca", now=0)
        self.hub.handle_register("r", "b", "cb", now=0)
        self.hub.handle_disconnect("r", "b", "cb", now=5)
        self.assertEqual(self.hub.counters.open_ws, 1)
        self.hub.handle_send("r", "a", "while-away", now=6)
        effects = self.hub.handle_register("r", "b", "cb2", now=14)
        self.assertEqual(delivered(effects, "b"), ["while-away"])
        self.assertEqual(self.hub.handle_timers(now=20), [])
        self.assertIsNotNone(self.hub.peer("r", "b"))

    def test_disconnect_then_removed(self) -> None:
        """Without re-registering the client is removed when the grace period ends, and its queue is lost."""
        self.hub.handle_register("r", "a", "ca", now=0)
        self.hub.handle_send("r", "a", "q", now=0)
        self.hub.handle_disconnect("r", "a", "ca", now=1)
        self.hub.handle_timers(now=11)
        self.assertIsNone(self.hub.peer("r", "a"))

    def test_stale_disconnect_ignored(self) -> None:
        """A close from an old socket does not unbind the client's new socket."""
        self.hub.handle_register("r", "a", "ca", now=0)
        self.hub.handle_disconnect("r", "a", "ca", now=1)
        self.hub.handle_register("r", "a", "ca2", now=2)
        self.hub.handle_disconnect("r", "a", "ca", now=3)
        self.assertEqual(self.hub.peer("r", "a").conn, "ca2")

    def test_delete(self) -> None:
        """DELETE removes the client and closes its socket; unknown ones are fine."""
        self.hub.handle_register("r", "a", "ca", now=0)
        self.assertEqual(self.hub.handle_delete("r", "a", now=0), [Disconnect("r", "a", "ca")])
        self.assertEqual(self.hub.handle_delete("r", "a", now=0), [])
        self.assertEqual(self.hub.handle_delete("nope", "x", now=0), [])
        self.assertEqual(self.hub.counters.open_ws, 0)

    def test_queue_not_flushed_by_send(self) -> None:
        """Older queued messages stay queued while new ones go directly (collider's TestClientSend)."""
        self.hub.handle_register("r", "a", "ca", now=0)
        self.hub.handle_post("r", "b", "x", now=0)
        self.hub.handle_send("r", "a", "queued", now=0)
        self.hub.handle_register("r", "b", "cb", now=0)
        self.hub.handle_send("r", "b", "to-a", now=0)
        self.assertEqual(delivered(self.hub.handle_send("r", "a", "direct", now=0)), ["direct"])


class RoomLinkTests(unittest.TestCase):
    """With a room registry: hijack protection, no ghost rooms, leave + bye."""

    def setUp(self) -> None:
        ids = iter(["A", "B", "C", "D"])
        self.storage = MemoryStorage()
        self.rooms = RoomRegistry(self.storage, make_client_id=lambda: next(ids))
        self.hub = SignalingHub(self.storage, rooms=self.rooms, register_timeout_s=10)

    def test_kick_says_bye_closes_the_socket_and_leaves(self) -> None:
        """An operator's kick: the other member gets bye, the kicked socket is disconnected, the room forgets it."""
        self.hub.handle_join("room", now=0)
        self.hub.handle_join("room", now=0)
        self.hub.handle_register("room", "A", "ca", now=0)
        self.hub.handle_register("room", "B", "cb", now=0)
        result, effects = self.hub.handle_kick("room", "A", now=1)
        self.assertEqual(result, Result.SUCCESS)
        self.assertEqual(delivered(effects, "B"), ['{"type": "bye"}'])
        self.assertIn(Disconnect("room", "A", "ca"), effects)
        self.assertIsNone(self.hub.peer("room", "A"))
        described = self.hub.describe_rooms(now=1)
        self.assertEqual([(r["room"], [m["client"] for m in r["members"]]) for r in described], [("room", ["B"])])
        self.assertEqual(self.hub.handle_kick("room", "A", now=2)[0], Result.UNKNOWN_CLIENT)

    def test_hijack_refused(self) -> None:
        """Only a client id the room server issued for that room may register."""
        self.hub.handle_join("room", now=0)
        for room, client in (("room", "Z"), ("other", "A")):
            e = self.assertRaises(SignalingError, self.hub.handle_register, room, client, "c", now=0)
            self.assertEqual(str(e), Errors.NOT_ISSUED)
        self.hub.handle_register("room", "A", "ca", now=0)

    def test_collider_post_needs_membership(self) -> None:
        """A collider POST from a client not in the room is refused."""
        e = self.assertRaises(SignalingError, self.hub.handle_post, "room", "Z", "m", now=0)
        self.assertEqual(str(e), Errors.NOT_IN_ROOM)

    def test_ghost_room_fixed(self) -> None:
        """A socket that closes without leave frees its place in the room after the grace period."""
        self.hub.handle_join("room", now=0)
        self.hub.handle_join("room", now=0)
        self.hub.handle_register("room", "A", "ca", now=0)
        self.hub.handle_register("room", "B", "cb", now=0)
        self.assertTrue(self.rooms.is_full("room"))
        self.hub.handle_disconnect("room", "B", "cb", now=100)
        self.hub.handle_timers(now=109)
        self.assertTrue(self.rooms.is_full("room"))
        self.hub.handle_timers(now=110)
        self.assertFalse(self.rooms.is_full("room"))
        self.assertFalse(self.rooms.is_member("room", "B"))
        self.assertTrue(self.storage.get_room("room").members["A"].is_initiator)
        self.assertEqual(self.hub.handle_join("room", now=111).result, Result.SUCCESS)

    def test_join_never_registered(self) -> None:
        """A client that joins and never opens its socket is removed from the room after the register timeout."""
        self.hub.handle_join("room", now=0)
        self.hub.handle_timers(now=10)
        self.assertIsNone(self.storage.get_room("room"))
        self.assertIsNone(self.storage.get_channel("room"))

    def test_message_forwarded_through_hub(self) -> None:
        """With two in the room /message is delivered through the hub, or queued on the sender until the peer registers."""
        self.hub.handle_join("room", now=0)
        self.hub.handle_join("room", now=0)
        self.hub.handle_register("room", "A", "ca", now=0)
        result, effects = self.hub.handle_message("room", "A", "early", now=0)
        self.assertEqual((result.result, effects), (Result.SUCCESS, []))
        self.assertEqual(delivered(self.hub.handle_register("room", "B", "cb", now=1), "B"), ["early"])
        result, effects = self.hub.handle_message("room", "A", "late", now=2)
        self.assertEqual(delivered(effects, "B"), ["late"])

    def test_stored_then_joined(self) -> None:
        """Messages posted alone are stored in the room, not queued in the hub."""
        self.hub.handle_join("room", now=0)
        result, effects = self.hub.handle_message("room", "A", "offer", now=0)
        self.assertEqual((result.result, result.forward, effects), (Result.SUCCESS, False, []))
        self.assertEqual(self.hub.handle_join("room", now=1).messages, ("offer",))

    def test_leave_then_bye(self) -> None:
        """After /leave the client's socket still carries its bye, the room counts one, and its socket closing removes it at once."""
        self.hub.handle_join("room", now=0)
        self.hub.handle_join("room", now=0)
        self.hub.handle_register("room", "A", "ca", now=0)
        self.hub.handle_register("room", "B", "cb", now=0)
        self.hub.handle_leave("room", "A", now=1)
        self.assertEqual(self.rooms.occupancy("room"), 1)
        self.assertEqual(delivered(self.hub.handle_send("room", "A", '{"type":"bye"}', now=1), "B"), ['{"type":"bye"}'])
        # B, now initiator, offers again: the room stores it for the next joiner.
        result, _ = self.hub.handle_message("room", "B", "offer2", now=2)
        self.assertFalse(result.forward)
        self.hub.handle_disconnect("room", "A", "ca", now=2)
        self.assertIsNone(self.hub.peer("room", "A"))
        self.assertEqual(self.rooms.occupancy("room"), 1)
        joined = self.hub.handle_join("room", now=3)
        self.assertEqual((joined.client_id, joined.messages), ("C", ("offer2",)))
        self.hub.handle_register("room", "C", "cc", now=3)

    def test_leave_lingering_socket_closed(self) -> None:
        """A client that left but keeps its socket open is disconnected after the register timeout."""
        self.hub.handle_join("room", now=0)
        self.hub.handle_register("room", "A", "ca", now=0)
        self.hub.handle_leave("room", "A", now=1)
        self.assertEqual(self.hub.handle_timers(now=11), [Disconnect("room", "A", "ca")])

    def test_delete_leaves_room(self) -> None:
        """collider's DELETE also removes the client from its room."""
        self.hub.handle_join("room", now=0)
        self.hub.handle_join("room", now=0)
        self.hub.handle_delete("room", "B", now=0)
        self.assertEqual(self.rooms.occupancy("room"), 1)

    def test_loopback_socket(self) -> None:
        """In a loopback room the page's second socket may register as loopback_client_id, and leaving removes it."""
        self.hub.handle_join("room", loopback=True, now=0)
        self.assertTrue(self.rooms.is_member("room", LOOPBACK_CLIENT_ID))
        self.hub.handle_register("room", "A", "ca", now=0)
        self.hub.handle_register("room", LOOPBACK_SOCKET_CLIENT_ID, "cl", now=0)
        _, effects = self.hub.handle_message("room", "A", "offer", now=0)
        self.assertEqual(delivered(effects, LOOPBACK_SOCKET_CLIENT_ID), ["offer"])
        _, effects = self.hub.handle_leave("room", "A", now=1)
        self.assertIn(Disconnect("room", LOOPBACK_SOCKET_CLIENT_ID, "cl"), effects)
        self.assertIsNone(self.storage.get_room("room"))

    def test_room_expiry_drops_sockets(self) -> None:
        """When a room with a lone client (no call in progress) expires, its signaling client goes too."""
        ids = iter(["A"])
        rooms = RoomRegistry(self.storage, room_ttl_s=60, make_client_id=lambda: next(ids))
        hub = SignalingHub(self.storage, rooms=rooms, register_timeout_s=10)
        hub.handle_join("room", now=0)
        hub.handle_register("room", "A", "ca", now=0)
        self.assertEqual(hub.handle_timers(now=60), [Disconnect("room", "A", "ca")])
        self.assertIsNone(self.storage.get_channel("room"))

    def test_call_in_progress_keeps_its_room(self) -> None:
        """Messages sent across several room lifetimes, with both sockets registered, keep the room and the call; once the call ends the room expires."""
        storage = MemoryStorage()
        rooms = RoomRegistry(storage, room_ttl_s=100, make_client_id=iter(["A", "B"]).__next__)
        hub = SignalingHub(storage, rooms=rooms, register_timeout_s=10)
        clock = task.Clock()
        runner = HubRunner(hub, clock)
        hub.handle_join("room", now=clock.seconds())
        hub.handle_join("room", now=clock.seconds())
        hub.handle_register("room", "A", "ca", now=clock.seconds())
        hub.handle_register("room", "B", "cb", now=clock.seconds())
        runner.rearm()
        for i in range(40):  # 400 s: four times the room's lifetime
            clock.advance(10)
            self.assertEqual(delivered(hub.handle_send("room", "A", f"m{i}", now=clock.seconds()), "B"), [f"m{i}"])
        room = storage.get_room("room")
        self.assertIsNotNone(room)
        self.assertEqual(sorted(room.members), ["A", "B"])
        self.assertEqual({p.conn for p in storage.get_channel("room").peers.values()}, {"ca", "cb"})
        # The call ends without a leave (sockets closed, clients gone for the grace period): the room goes.
        hub.handle_disconnect("room", "A", "ca", now=clock.seconds())
        hub.handle_disconnect("room", "B", "cb", now=clock.seconds())
        runner.rearm()
        clock.advance(11)
        self.assertIsNone(storage.get_room("room"))

    def test_room_without_sockets_expires(self) -> None:
        """A room whose members never open a socket (only /message traffic) expires after its lifetime."""
        storage = MemoryStorage()
        rooms = RoomRegistry(storage, room_ttl_s=100, make_client_id=iter(["A"]).__next__)
        hub = SignalingHub(storage, rooms=rooms, register_timeout_s=1000)
        clock = task.Clock()
        runner = HubRunner(hub, clock)
        hub.handle_join("room", now=0)
        runner.rearm()
        clock.advance(99)
        self.assertIsNotNone(storage.get_room("room"))
        clock.advance(61)  # the next sweep after the expiry
        self.assertIsNone(storage.get_room("room"))


class CounterTests(unittest.TestCase):
    def test_message_counters(self) -> None:
        """Forwarded, queued and dropped messages are counted for metrics."""
        hub = SignalingHub(MemoryStorage(), max_queued=1)
        hub.handle_register("r", "a", "ca", now=0)
        hub.handle_send("r", "a", "q", now=0)
        self.assertRaises(SignalingError, hub.handle_send, "r", "a", "x", now=0)
        hub.handle_register("r", "b", "cb", now=0)
        hub.handle_send("r", "a", "d", now=0)
        c = hub.counters
        self.assertEqual((c.messages_forwarded, c.messages_queued, c.messages_dropped), (2, 1, 1))


class ByteBudgetTests(unittest.TestCase):
    """Queued and stored messages are bounded in bytes, per client, per room and for the process."""

    def setUp(self) -> None:
        from webrtcstack.limits import ByteBudget

        self.storage = MemoryStorage()
        self.buffers = ByteBudget(10_000)
        self.rooms = RoomRegistry(self.storage, make_client_id=iter(["A", "B", "C", "D"]).__next__,
                                  max_stored_bytes=3000, buffers=self.buffers)
        self.hub = SignalingHub(self.storage, rooms=self.rooms, max_queued_bytes=2500, buffers=self.buffers)

    def test_queued_bytes_per_client(self) -> None:
        """A client's queue refuses the message that would take it past max_queued_bytes; registering the peer delivers and frees them."""
        self.hub.handle_join("room", now=0)
        self.hub.handle_join("room", now=0)
        self.hub.handle_register("room", "A", "ca", now=0)
        for _ in range(2):
            self.hub.handle_send("room", "A", "x" * 1000, now=0)
        e = self.assertRaises(SignalingError, self.hub.handle_send, "room", "A", "x" * 1000, now=0)
        self.assertEqual(str(e), Errors.QUEUE_FULL)
        self.assertEqual(self.buffers.held, 2000)
        self.assertEqual(len(delivered(self.hub.handle_register("room", "B", "cb", now=1), "B")), 2)
        self.assertEqual(self.buffers.held, 0)

    def test_stored_bytes_per_room_and_release(self) -> None:
        """A room refuses the stored message that would take it past max_stored_bytes; the joiner takes them and the bytes are freed."""
        self.hub.handle_join("room", now=0)
        for _ in range(3):
            self.assertEqual(self.rooms.handle_message("room", "A", "y" * 1000, now=0).result, Result.SUCCESS)
        refused = self.rooms.handle_message("room", "A", "y", now=0)
        self.assertEqual(refused.result, Result.ERROR)
        self.assertIn("stored bytes", refused.error)
        self.assertEqual(self.buffers.held, 3000)
        self.assertEqual(len(self.hub.handle_join("room", now=1).messages), 3)
        self.assertEqual(self.buffers.held, 0)

    def test_process_ceiling(self) -> None:
        """Across rooms, the process-wide ceiling refuses what the per-room limits would allow; leaving and expiry give the bytes back."""
        for n in range(4):
            self.hub.handle_join(f"r{n}", now=0)
        client = {f"r{n}": c for n, c in enumerate("ABCD")}
        for room in ("r0", "r1", "r2"):
            for _ in range(3):
                self.assertEqual(self.rooms.handle_message(room, client[room], "z" * 1000, now=0).result, Result.SUCCESS)
        result = self.rooms.handle_message("r3", client["r3"], "z" * 2000, now=0)
        self.assertEqual(result.result, Result.ERROR)
        self.assertEqual((self.buffers.held, self.buffers.refused), (9000, 1))
        self.hub.handle_leave("r0", client["r0"], now=1)
        self.assertEqual(self.buffers.held, 6000)
        self.rooms.room_ttl_s = 10
        self.rooms._next_sweep = 0
        self.hub.handle_timers(now=100_000)
        self.assertEqual(self.buffers.held, 0)
