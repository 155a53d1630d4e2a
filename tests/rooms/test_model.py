"""The room registry: apprtc's join, message and leave rules, limits and expiry."""

from __future__ import annotations

from twisted.trial import unittest

from webrtcstack.rooms.model import LOOPBACK_CLIENT_ID, Result, RoomRegistry, is_valid_id, new_client_id
from webrtcstack.rooms.storage import MemoryStorage


def ids(*values: str):
    it = iter(values)
    return lambda: next(it)


class IdTests(unittest.TestCase):
    def test_client_id_is_eight_digits(self) -> None:
        """A new client id is eight decimal digits."""
        cid = new_client_id()
        self.assertEqual(len(cid), 8)
        self.assertTrue(cid.isdigit())

    def test_valid_ids(self) -> None:
        """Ids allow letters, digits, - and _ only, 1 to 64 of them."""
        self.assertTrue(is_valid_id("Ab-_09"))
        self.assertTrue(is_valid_id("x" * 64))
        for bad in ("", "x" * 65, "a b", "a/b", "a.b", "é", "a\n"):
            self.assertFalse(is_valid_id(bad), bad)


class JoinTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reg = RoomRegistry(MemoryStorage(), make_client_id=ids("A", "B", "C", "D"))

    def test_first_is_initiator(self) -> None:
        """The first client of a room is the initiator and gets no messages."""
        r = self.reg.handle_join("room", now=0)
        self.assertEqual((r.result, r.client_id, r.is_initiator, r.messages, r.created), (Result.SUCCESS, "A", True, (), True))

    def test_second_takes_stored_messages(self) -> None:
        """The second client is not the initiator and takes the first one's stored messages, verbatim and in order."""
        self.reg.handle_join("room", now=0)
        for m in ("1", "2", "3"):
            self.assertEqual(self.reg.handle_message("room", "A", m, now=1).result, Result.SUCCESS)
        r = self.reg.handle_join("room", now=2)
        self.assertEqual((r.client_id, r.is_initiator, r.messages), ("B", False, ("1", "2", "3")))
        self.assertEqual(self.reg.storage.get_room("room").members["A"].messages, [])

    def test_full(self) -> None:
        """A third client gets FULL."""
        self.reg.handle_join("room", now=0)
        self.reg.handle_join("room", now=0)
        self.assertEqual(self.reg.handle_join("room", now=0).result, Result.FULL)
        self.assertTrue(self.reg.is_full("room"))

    def test_capacity(self) -> None:
        """The capacity is that of group calls (mesh rooms); apprtc's rooms stay two-person whatever it is."""
        reg = RoomRegistry(MemoryStorage(), capacity=3, make_client_id=ids("A", "B", "C", "D", "E", "F"))
        joins = [reg.handle_join("group", mesh=True, now=0) for _ in range(3)]
        self.assertEqual([j.result for j in joins], [Result.SUCCESS] * 3)
        self.assertEqual([j.members for j in joins], [(), ("A",), ("A", "B")])
        self.assertTrue(all(j.mesh for j in joins))
        self.assertEqual(reg.handle_join("group", mesh=True, now=0).result, Result.FULL)
        self.assertTrue(reg.is_full("group", mesh=True))
        reg.handle_join("pair", now=0)
        reg.handle_join("pair", now=0)
        self.assertEqual(reg.handle_join("pair", now=0).result, Result.FULL)

    def test_apprtc_clients_and_group_rooms(self) -> None:
        """An apprtc client is told a group room is full; our page joins an apprtc room as an apprtc client."""
        reg = RoomRegistry(MemoryStorage(), capacity=4, make_client_id=ids("A", "B", "C", "D"))
        reg.handle_join("group", mesh=True, now=0)
        refused = reg.handle_join("group", now=0)
        self.assertEqual(refused.result, Result.FULL)
        self.assertTrue(reg.is_full("group"))
        reg.handle_join("pair", now=0)
        ours = reg.handle_join("pair", mesh=True, now=0)
        self.assertEqual((ours.result, ours.mesh, ours.members), (Result.SUCCESS, False, ()))

    def test_no_group_rooms_at_capacity_two(self) -> None:
        """With capacity 2 (the default) the page's rooms are apprtc rooms: nothing changes for anyone."""
        reg = RoomRegistry(MemoryStorage(), make_client_id=ids("A", "B"))
        self.assertFalse(reg.handle_join("room", mesh=True, now=0).mesh)
        self.assertEqual(reg.handle_join("room", now=0).result, Result.SUCCESS)

    def test_duplicate_client(self) -> None:
        """A new id that is already in the room gets DUPLICATE_CLIENT."""
        reg = RoomRegistry(MemoryStorage(), make_client_id=ids("A", "A"))
        reg.handle_join("room", now=0)
        self.assertEqual(reg.handle_join("room", now=0).result, Result.DUPLICATE_CLIENT)

    def test_max_rooms(self) -> None:
        """A join that would create a room beyond max_rooms gets ERROR; joining an existing room still works."""
        reg = RoomRegistry(MemoryStorage(), max_rooms=1, make_client_id=ids("A", "B", "C"))
        reg.handle_join("one", now=0)
        r = reg.handle_join("two", now=0)
        self.assertEqual(r.result, Result.ERROR)
        self.assertIn("too many rooms", r.error)
        self.assertEqual(reg.handle_join("one", now=0).result, Result.SUCCESS)

    def test_loopback(self) -> None:
        """A loopback join fills the room at once with the loopback pseudo client."""
        r = self.reg.handle_join("room", loopback=True, now=0)
        self.assertTrue(r.is_initiator)
        self.assertEqual(self.reg.occupancy("room"), 2)
        self.assertTrue(self.reg.is_member("room", LOOPBACK_CLIENT_ID))
        self.assertTrue(self.reg.handle_message("room", "A", "x", now=0).forward)


class MessageTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reg = RoomRegistry(MemoryStorage(), max_stored_messages=2, max_message_bytes=300, make_client_id=ids("A", "B"))
        self.reg.handle_join("room", now=0)

    def test_unknown_room(self) -> None:
        """A message to a room that does not exist gets UNKNOWN_ROOM."""
        self.assertEqual(self.reg.handle_message("nope", "A", "x", now=0).result, Result.UNKNOWN_ROOM)

    def test_unknown_client(self) -> None:
        """A message from a client not in the room gets UNKNOWN_CLIENT."""
        self.assertEqual(self.reg.handle_message("room", "Z", "x", now=0).result, Result.UNKNOWN_CLIENT)

    def test_forward_when_two(self) -> None:
        """With two clients a message is not stored but forwarded."""
        self.reg.handle_join("room", now=0)
        r = self.reg.handle_message("room", "A", "x", now=0)
        self.assertEqual((r.result, r.forward), (Result.SUCCESS, True))
        self.assertEqual(self.reg.storage.get_room("room").members["A"].messages, [])

    def test_stored_limit(self) -> None:
        """Past max_stored_messages a message gets ERROR with a reason."""
        self.reg.handle_message("room", "A", "1", now=0)
        self.reg.handle_message("room", "A", "2", now=0)
        r = self.reg.handle_message("room", "A", "3", now=0)
        self.assertEqual(r.result, Result.ERROR)
        self.assertIn("at most 2", r.error)

    def test_size_limit(self) -> None:
        """A message over max_message_bytes (in UTF-8) gets ERROR."""
        self.assertEqual(self.reg.handle_message("room", "A", "é" * 150, now=0).result, Result.SUCCESS)
        self.assertEqual(self.reg.handle_message("room", "A", "é" * 151, now=0).result, Result.ERROR)


class LeaveTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reg = RoomRegistry(MemoryStorage(), make_client_id=ids("A", "B", "C"))

    def test_unknowns(self) -> None:
        """Leaving an unknown room or as an unknown client says so."""
        self.assertEqual(self.reg.handle_leave("nope", "A", now=0), Result.UNKNOWN_ROOM)
        self.reg.handle_join("room", now=0)
        self.assertEqual(self.reg.handle_leave("room", "Z", now=0), Result.UNKNOWN_CLIENT)

    def test_last_leaves_deletes_room(self) -> None:
        """The room is deleted when its last client leaves."""
        self.reg.handle_join("room", now=0)
        self.assertEqual(self.reg.handle_leave("room", "A", now=0), Result.SUCCESS)
        self.assertIsNone(self.reg.storage.get_room("room"))

    def test_remaining_becomes_initiator(self) -> None:
        """When the initiator leaves the other client becomes initiator, and the next joiner gets its stored messages."""
        self.reg.handle_join("room", now=0)
        self.reg.handle_join("room", now=0)
        self.reg.handle_leave("room", "A", now=0)
        self.assertTrue(self.reg.storage.get_room("room").members["B"].is_initiator)
        self.assertEqual(self.reg.handle_message("room", "B", "offer", now=0).forward, False)
        r = self.reg.handle_join("room", now=0)
        self.assertEqual((r.client_id, r.is_initiator, r.messages), ("C", False, ("offer",)))

    def test_loopback_leave(self) -> None:
        """Leaving a loopback room removes the pseudo client too."""
        self.reg.handle_join("room", loopback=True, now=0)
        self.reg.handle_leave("room", "A", now=0)
        self.assertIsNone(self.reg.storage.get_room("room"))


class ExpiryTests(unittest.TestCase):
    def test_room_expires_after_ttl(self) -> None:
        """A room with no change for room_ttl_s is removed by the next sweep, and a change pushes expiry back."""
        reg = RoomRegistry(MemoryStorage(), room_ttl_s=120, make_client_id=ids("A", "B"))
        reg.handle_join("room", now=0)
        reg.handle_join("other", now=0)
        self.assertEqual(reg.next_deadline(), 60)
        self.assertEqual(reg.handle_timers(now=60), [])
        reg.handle_message("other", "B", "x", now=100)
        self.assertEqual(reg.handle_timers(now=120), ["room"])
        self.assertEqual(reg.handle_timers(now=180), [])
        self.assertEqual(reg.handle_timers(now=240), ["other"])
        self.assertIsNone(reg.next_deadline())
