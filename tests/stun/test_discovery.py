"""RFC 5780 on the core: which of the four addresses answers, to where, with which attributes."""

from __future__ import annotations

import os

from twisted.trial import unittest

from webrtcstack.stun.binding import BindingHandler
from webrtcstack.stun.constants import AttrType, MessageClass, Method
from webrtcstack.stun.discovery import CHANGE_IP, CHANGE_PORT, Discovery
from webrtcstack.stun.errors import StunDecodeError
from webrtcstack.stun.message import Message, decode, encode

A1, A2, P1, P2 = "192.0.2.10", "192.0.2.11", 3478, 3479
CLIENT = ("198.51.100.7", 40000)


def request(*attributes: tuple[int, object]) -> bytes:
    return encode(Message(Method.BINDING, MessageClass.REQUEST, os.urandom(12), attributes))


class DiscoveryTests(unittest.TestCase):
    def setUp(self) -> None:
        self.binding = BindingHandler("webrtcstack")
        self.discovery = Discovery(self.binding, (A1, A2), (P1, P2))

    def ask(self, local: tuple[str, int], *attributes: tuple[int, object]) -> tuple[Message, tuple, tuple]:
        answer = self.discovery.answer(request(*attributes), CLIENT, local)
        assert answer is not None
        return decode(answer.reply), answer.origin, answer.to

    def test_every_answer_names_its_origin_and_the_other_address(self) -> None:
        """RFC 5780 §6.1: RESPONSE-ORIGIN is where the answer leaves from, OTHER-ADDRESS differs in both."""
        for local, other in (((A1, P1), (A2, P2)), ((A2, P2), (A1, P1)), ((A1, P2), (A2, P1)), ((A2, P1), (A1, P2))):
            reply, origin, to = self.ask(local)
            self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
            self.assertEqual(reply.get(AttrType.XOR_MAPPED_ADDRESS), CLIENT)
            self.assertEqual(reply.get(AttrType.MAPPED_ADDRESS), CLIENT)
            self.assertEqual((origin, reply.get(AttrType.RESPONSE_ORIGIN)), (local, local))
            self.assertEqual(reply.get(AttrType.OTHER_ADDRESS), other)
            self.assertEqual(to, CLIENT)

    def test_change_request_combinations(self) -> None:
        """§6.1: change IP, change port, both, neither, from the primary and from an alternate address."""
        cases = {0: (A1, P1), CHANGE_PORT: (A1, P2), CHANGE_IP: (A2, P1), CHANGE_IP | CHANGE_PORT: (A2, P2)}
        for flags, expected in cases.items():
            reply, origin, to = self.ask((A1, P1), (AttrType.CHANGE_REQUEST, flags))
            self.assertEqual((origin, reply.get(AttrType.RESPONSE_ORIGIN)), (expected, expected), flags)
            self.assertEqual(to, CLIENT)
        reply, origin, _ = self.ask((A2, P2), (AttrType.CHANGE_REQUEST, CHANGE_IP))
        self.assertEqual(origin, (A1, P2))

    def test_response_port_changes_only_the_port(self) -> None:
        """§7.5: the answer goes to RESPONSE-PORT on the request's source IP, never to another IP."""
        reply, origin, to = self.ask((A1, P1), (AttrType.RESPONSE_PORT, 5000), (AttrType.CHANGE_REQUEST, CHANGE_IP))
        self.assertEqual(to, (CLIENT[0], 5000))
        self.assertEqual(origin, (A2, P1))
        self.assertEqual(reply.get(AttrType.XOR_MAPPED_ADDRESS), CLIENT)

    def test_software_and_fingerprint(self) -> None:
        reply, _, _ = self.ask((A1, P1))
        self.assertEqual(reply.get(AttrType.SOFTWARE), "webrtcstack")
        self.assertIn(AttrType.FINGERPRINT, reply)

    def test_other_methods_and_unknown_attributes(self) -> None:
        other = encode(Message(Method.ALLOCATE, MessageClass.REQUEST, os.urandom(12), ()))
        answer = self.discovery.answer(other, CLIENT, (A1, P1))
        assert answer is not None
        self.assertEqual(decode(answer.reply).msg_class, MessageClass.ERROR)
        self.assertEqual((answer.origin, answer.to), ((A1, P1), CLIENT))
        unknown = request((0x7F00, b"x"))
        answer = self.discovery.answer(unknown, CLIENT, (A1, P1))
        assert answer is not None
        self.assertEqual(decode(answer.reply).get(AttrType.UNKNOWN_ATTRIBUTES), (0x7F00,))

    def test_malformed_and_not_requests(self) -> None:
        with self.assertRaises(StunDecodeError):
            self.discovery.answer(b"\x00\x01\x00\x00garbage", CLIENT, (A1, P1))
        indication = encode(Message(Method.BINDING, MessageClass.INDICATION, os.urandom(12), ()))
        self.assertIsNone(self.discovery.answer(indication, CLIENT, (A1, P1)))
        self.assertEqual((self.binding.counters.malformed, self.binding.counters.indications), (1, 1))

    def test_knows_its_four_addresses(self) -> None:
        self.assertEqual(self.discovery.addresses(), [(A1, P1), (A1, P2), (A2, P1), (A2, P2)])
        self.assertTrue(self.discovery.knows((A2, P2)))
        self.assertFalse(self.discovery.knows(("192.0.2.12", P1)))
        with self.assertRaises(ValueError):
            Discovery(self.binding, (A1, A1), (P1, P2))

    def test_without_discovery_change_request_is_refused(self) -> None:
        """The plain handler (one address) still answers 420 to a CHANGE-REQUEST it cannot honour."""
        raw = request((AttrType.CHANGE_REQUEST, CHANGE_IP))
        reply = decode(self.binding.handle(raw, CLIENT, "udp"))  # type: ignore[arg-type]
        self.assertEqual(reply.get(AttrType.UNKNOWN_ATTRIBUTES), (AttrType.CHANGE_REQUEST,))
