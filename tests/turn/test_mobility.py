"""RFC 8016 mobility on the TURN core: tickets, moves, forgery, replay, expiry, and 405 when off."""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from tests.turn.support import Client, error_code, make_engine
from webrtcstack.stun.constants import AttrType, MessageClass
from webrtcstack.turn.mobility import TicketSealer

ASK = [(AttrType.MOBILITY_TICKET, b"")]


class TicketSealerTests(SynchronousTestCase):
    def test_round_trip_and_refusals(self) -> None:
        """A ticket opens to what was sealed; altered, foreign, truncated or expired ones do not open."""
        sealer = TicketSealer()
        ticket = sealer.seal("a7", 3, "alice", expires_at=100.0)
        opened = sealer.open(ticket, now=50.0)
        assert opened is not None
        self.assertEqual((opened.allocation_id, opened.generation, opened.username), ("a7", 3, "alice"))
        altered = bytearray(ticket)
        altered[-1] ^= 1
        self.assertIsNone(sealer.open(bytes(altered), now=50.0))
        self.assertIsNone(TicketSealer().open(ticket, now=50.0))  # another process's key
        self.assertIsNone(sealer.open(ticket[:20], now=50.0))
        self.assertIsNone(sealer.open(ticket, now=101.0))
        self.assertNotIn(b"alice", ticket)  # sealed, not just signed


class MobilityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.opener = make_engine(mobility=True)
        self.old = Client(self.engine, client=("198.51.100.7", 40000))
        reply = self.old.allocate(ASK)
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
        self.ticket = reply.get(AttrType.MOBILITY_TICKET)
        assert self.ticket
        bound = self.old.channel_bind(0x4001, "93.184.216.34", 5000)
        assert bound.msg_class == MessageClass.SUCCESS
        self.new = Client(self.engine, client=("203.0.113.99", 50000))

    def move(self, client: Client, ticket: bytes, now: float = 1.0) -> object:
        return client.refresh(now=now, attrs=[(AttrType.MOBILITY_TICKET, ticket)])

    def test_refresh_with_ticket_moves_the_allocation(self) -> None:
        """A Refresh with the ticket from a new address moves the allocation there with its relay and
        channels; ChannelData from the new address reaches the peer, the old address has nothing."""
        reply = self.move(self.new, self.ticket)
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS, reply)
        self.assertTrue(reply.get(AttrType.MOBILITY_TICKET))
        self.assertTrue(self.engine.has_allocation(self.new.five_tuple))
        self.assertFalse(self.engine.has_allocation(self.old.five_tuple))
        relay = self.opener.relays[0]
        self.engine.handle_client_packet(self.new.five_tuple, struct.pack("!HH", 0x4001, 2) + b"hi",
                                         self.new.to_client, now=2.0)
        self.assertEqual(relay.sent, [(b"hi", ("93.184.216.34", 5000))])
        self.engine.handle_client_packet(self.old.five_tuple, struct.pack("!HH", 0x4001, 2) + b"no",
                                         self.old.to_client, now=2.0)
        self.assertEqual(len(relay.sent), 1)
        # Peer data now goes to the new address.
        (allocation,) = self.engine.manager.allocations.values()
        allocation.handle_peer_datagram(b"back", ("93.184.216.34", 5000), 3.0)
        self.assertEqual(self.new.received[-1], struct.pack("!HH", 0x4001, 4) + b"back")
        self.assertEqual(error_code(self.old.refresh(now=4.0)), 437)

    def test_replayed_ticket_moves_nothing(self) -> None:
        """Once a ticket has been used (a newer one was issued), it gets 400 and the allocation stays."""
        self.assertEqual(self.move(self.new, self.ticket).msg_class, MessageClass.SUCCESS)
        third = Client(self.engine, client=("192.0.2.77", 1234))
        self.assertEqual(error_code(self.move(third, self.ticket)), 400)
        self.assertTrue(self.engine.has_allocation(self.new.five_tuple))
        self.assertFalse(self.engine.has_allocation(third.five_tuple))

    def test_forged_ticket_and_other_user(self) -> None:
        """A forged ticket gets 400; the right ticket from another user gets 441; nothing moves."""
        self.assertEqual(error_code(self.move(self.new, b"\x00" * 60)), 400)
        bob = Client(self.engine, client=("203.0.113.99", 50001), username="bob", password="secret-b")
        self.assertEqual(error_code(self.move(bob, self.ticket)), 441)
        self.assertTrue(self.engine.has_allocation(self.old.five_tuple))

    def test_expired_ticket(self) -> None:
        """A ticket past its time (the allocation's lifetime plus the longest refresh) gets 400."""
        self.assertEqual(error_code(self.move(self.new, self.ticket, now=600 + 3600 + 1)), 400)

    def test_ticket_for_an_ended_allocation(self) -> None:
        """After the allocation ends its ticket gets 437."""
        self.old.refresh(0, now=1.0)
        self.assertEqual(error_code(self.move(self.new, self.ticket, now=2.0)), 437)

    def test_unauthenticated_ticket_refresh_is_challenged(self) -> None:
        """A Refresh with a ticket from an address with no allocation gets a 401 challenge, not 437."""
        raw = self.new.build(0x004, [(AttrType.MOBILITY_TICKET, self.ticket)], sign=False)
        reply = self.new.send_raw(raw, now=1.0)
        assert reply is not None
        self.assertEqual(error_code(reply), 401)


class MobilityOffTests(SynchronousTestCase):
    def test_405_when_off(self) -> None:
        """With mobility off, asking for a ticket on Allocate or moving with one gets 405 Mobility Forbidden."""
        engine, _ = make_engine()
        client = Client(engine)
        self.assertEqual(error_code(client.allocate(ASK)), 405)
        self.assertEqual(client.allocate().msg_class, MessageClass.SUCCESS)
        self.assertEqual(error_code(client.refresh(attrs=[(AttrType.MOBILITY_TICKET, b"x" * 40)])), 405)

    def test_405_for_stream_clients(self) -> None:
        """Mobility is for UDP 5-tuples: a TCP client asking gets 405."""
        from webrtcstack.turn.five_tuple import Transport

        engine, _ = make_engine(mobility=True)
        self.assertEqual(error_code(Client(engine, transport=Transport.TCP).allocate(ASK)), 405)
