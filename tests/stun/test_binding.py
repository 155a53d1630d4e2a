# -*- test-case-name: tests.stun.test_binding -*-
"""Tests for webrtcstack.stun.binding: the sans-IO Binding server."""

from __future__ import annotations

import struct

from twisted.trial import unittest

from webrtcstack.stun import (
    AttrType,
    BindingHandler,
    ErrorCode,
    Message,
    MessageClass,
    Method,
    StunDecodeError,
    decode,
    encode,
    verify_fingerprint,
)

TID = bytes(range(12))
CLASSIC_TID = bytes(range(100, 116))


def request(*attributes: tuple[int, object], tid: bytes = TID, method: int = Method.BINDING,
            msg_class: MessageClass = MessageClass.REQUEST, fingerprint: bool = True) -> bytes:
    """A request with these attributes."""
    return encode(Message(method, msg_class, tid, tuple(attributes)), fingerprint=fingerprint)


class BindingHandlerTests(unittest.SynchronousTestCase):
    """Requests in, responses out."""

    def setUp(self) -> None:
        self.handler = BindingHandler("webrtcstack test")

    def reply(self, raw: bytes, source: tuple[str, int] = ("192.0.2.7", 40000)) -> Message:
        """Handle ``raw`` and decode the reply, checking its FINGERPRINT."""
        out = self.handler.handle(raw, source, "udp")
        assert out is not None
        self.assertTrue(verify_fingerprint(out))
        return decode(out)

    def test_ipv4_success(self) -> None:
        """A Binding request gets XOR-MAPPED-ADDRESS of its source, SOFTWARE and FINGERPRINT, same transaction id."""
        response = self.reply(request(fingerprint=False))
        self.assertEqual((response.method, response.msg_class), (Method.BINDING, MessageClass.SUCCESS))
        self.assertEqual(response.transaction_id, TID)
        self.assertEqual([t for t, _ in response.attributes],
                         [AttrType.XOR_MAPPED_ADDRESS, AttrType.SOFTWARE, AttrType.FINGERPRINT])
        self.assertEqual(response.get(AttrType.XOR_MAPPED_ADDRESS), ("192.0.2.7", 40000))
        self.assertEqual(response.get(AttrType.SOFTWARE), "webrtcstack test")
        self.assertEqual(self.handler.counters.requests, 1)
        self.assertEqual(self.handler.counters.responses, 1)

    def test_ipv6_success(self) -> None:
        """An IPv6 source is reflected as an IPv6 XOR-MAPPED-ADDRESS, zone dropped."""
        response = self.reply(request(), ("fe80::1%eth0", 5))
        self.assertEqual(response.get(AttrType.XOR_MAPPED_ADDRESS), ("fe80::1", 5))

    def test_v4_mapped_source(self) -> None:
        """A v4-mapped IPv6 source (dual-stack socket) is reported as IPv4."""
        response = self.reply(request(), ("::ffff:192.0.2.9", 6))
        self.assertEqual(response.get(AttrType.XOR_MAPPED_ADDRESS), ("192.0.2.9", 6))

    def test_no_software(self) -> None:
        """With software "" the response carries no SOFTWARE."""
        self.handler = BindingHandler("")
        self.assertNotIn(AttrType.SOFTWARE, self.reply(request()))

    def test_rfc3489_client(self) -> None:
        """A request without the magic cookie gets MAPPED-ADDRESS and its 16-byte transaction id back."""
        response = self.reply(request(tid=CLASSIC_TID), ("198.51.100.1", 3478))
        self.assertTrue(response.classic)
        self.assertEqual(response.transaction_id, CLASSIC_TID)
        self.assertEqual(response.get(AttrType.MAPPED_ADDRESS), ("198.51.100.1", 3478))
        self.assertNotIn(AttrType.XOR_MAPPED_ADDRESS, response)

    def test_unknown_comprehension_required(self) -> None:
        """Unknown types below 0x8000 give 420 listing each once; unknown optional ones are ignored."""
        response = self.reply(request((0x7F01, b"a"), (0xC001, b"b"), (0x7F02, b""), (0x7F01, b"c")))
        self.assertEqual(response.msg_class, MessageClass.ERROR)
        self.assertEqual(response.transaction_id, TID)
        self.assertEqual(response.get(AttrType.ERROR_CODE)[0], ErrorCode.UNKNOWN_ATTRIBUTE)
        self.assertEqual(response.get(AttrType.UNKNOWN_ATTRIBUTES), (0x7F01, 0x7F02))
        self.assertEqual(self.handler.counters.error_responses, 1)

    def test_unknown_optional_only(self) -> None:
        """An unknown comprehension-optional attribute does not stop a success response."""
        self.assertEqual(self.reply(request((0xC001, b"b"))).msg_class, MessageClass.SUCCESS)

    def test_change_request(self) -> None:
        """CHANGE-REQUEST asking for another IP or port gets 420; with no flags it is harmless."""
        response = self.reply(request((AttrType.CHANGE_REQUEST, 0x6)))
        self.assertEqual(response.get(AttrType.UNKNOWN_ATTRIBUTES), (AttrType.CHANGE_REQUEST,))
        self.assertEqual(self.reply(request((AttrType.CHANGE_REQUEST, 0))).msg_class, MessageClass.SUCCESS)

    def test_ice_check_attributes_understood(self) -> None:
        """An ICE-style request (USERNAME, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MI) succeeds."""
        raw = encode(Message(Method.BINDING, MessageClass.REQUEST, TID, (
            (AttrType.USERNAME, "a:b"), (AttrType.PRIORITY, 1), (AttrType.ICE_CONTROLLING, 2),
            (AttrType.USE_CANDIDATE, True))), integrity_key=b"pw")
        self.assertEqual(self.reply(raw).msg_class, MessageClass.SUCCESS)

    def test_other_method(self) -> None:
        """A request of another method (Allocate) gets 400 from a Binding-only server."""
        response = self.reply(request(method=Method.ALLOCATE))
        self.assertEqual((response.method, response.get(AttrType.ERROR_CODE)[0]), (Method.ALLOCATE, 400))

    def test_indication_silent(self) -> None:
        """A Binding indication is accepted without a reply."""
        self.assertIsNone(self.handler.handle(request(msg_class=MessageClass.INDICATION), ("::1", 1), "udp"))
        self.assertEqual(self.handler.counters.indications, 1)

    def test_responses_ignored(self) -> None:
        """Success and error responses sent to the server get no reply."""
        for msg_class in (MessageClass.SUCCESS, MessageClass.ERROR):
            self.assertIsNone(self.handler.handle(request(msg_class=msg_class), ("::1", 1), "udp"))
        self.assertEqual(self.handler.counters.ignored, 2)

    def test_malformed_raises(self) -> None:
        """Non-STUN and truncated bytes raise StunDecodeError and are counted."""
        self.assertRaises(StunDecodeError, self.handler.handle, b"\x80garbage", ("::1", 1), "udp")
        self.assertRaises(StunDecodeError, self.handler.handle, request()[:-4], ("::1", 1), "udp")
        self.assertRaises(StunDecodeError, self.handler.handle, b"", ("::1", 1), "udp")
        self.assertEqual(self.handler.counters.malformed, 3)

    def test_bad_fingerprint_raises(self) -> None:
        """A request whose FINGERPRINT does not match raises StunDecodeError and is counted apart."""
        raw = bytearray(request())
        raw[-1] ^= 1
        self.assertRaises(StunDecodeError, self.handler.handle, bytes(raw), ("::1", 1), "udp")
        self.assertEqual(self.handler.counters.bad_fingerprint, 1)
        self.assertEqual(self.handler.counters.as_dict()["bad_fingerprint"], 1)

    def test_attributes_after_integrity_do_not_trigger_420(self) -> None:
        """An unknown comprehension-required attribute after MESSAGE-INTEGRITY is ignored, not refused."""
        raw = bytearray(encode(Message(Method.BINDING, MessageClass.REQUEST, TID), integrity_key=b"k",
                               fingerprint=False) + struct.pack("!HH", 0x7F01, 0))
        struct.pack_into("!H", raw, 2, len(raw) - 20)
        self.assertEqual(self.reply(bytes(raw)).msg_class, MessageClass.SUCCESS)


class FastPathTests(unittest.SynchronousTestCase):
    """The hand-built success response is what the general encoder would produce."""

    def test_same_bytes_as_encode(self) -> None:
        """For IPv4, IPv6, RFC 3489 clients and with or without SOFTWARE, the bytes equal encode()'s."""
        for software in ("", "webrtcstack", "odd length!"):
            handler = BindingHandler(software)
            for tid, source in [(TID, ("192.0.2.1", 1)), (TID, ("2001:db8::1", 65535)),
                                (CLASSIC_TID, ("198.51.100.2", 3478))]:
                address_type = AttrType.XOR_MAPPED_ADDRESS if len(tid) == 12 else AttrType.MAPPED_ADDRESS
                attributes: tuple[tuple[int, object], ...] = ((address_type, source),)
                if software:
                    attributes += ((AttrType.SOFTWARE, software),)
                expected = encode(Message(Method.BINDING, MessageClass.SUCCESS, tid, attributes))
                self.assertEqual(handler.handle(request(tid=tid), source, "udp"), expected)


class HeaderOnlyTests(unittest.SynchronousTestCase):
    """A Binding request with no attributes (or FINGERPRINT alone) is answered from its header, undecoded."""

    def setUp(self) -> None:
        self.handler = BindingHandler("webrtcstack test")
        self.decoded: list[bytes] = []
        from webrtcstack.stun import binding

        real = binding.decode

        def counting_decode(raw: bytes, *args: object, **kw: object) -> Message:
            self.decoded.append(raw)
            return real(raw, *args, **kw)  # type: ignore[arg-type]

        self.patch(binding, "decode", counting_decode)

    def test_not_decoded(self) -> None:
        """Both shapes get the general path's bytes, and neither is decoded; both are counted."""
        for fingerprint in (False, True):
            raw = request(fingerprint=fingerprint)
            self.assertEqual(len(raw), 28 if fingerprint else 20)
            out = self.handler.handle(raw, ("::ffff:192.0.2.9", 6), "udp")
            self.assertEqual(out, self.handler.success_response(decode(raw), ("192.0.2.9", 6)))
        self.assertEqual(self.decoded, [])
        self.assertEqual((self.handler.counters.requests, self.handler.counters.responses), (2, 2))

    def test_bad_fingerprint(self) -> None:
        """FINGERPRINT is still checked: a wrong one raises and is counted, with no answer."""
        raw = bytearray(request())
        raw[-1] ^= 1
        self.assertRaises(StunDecodeError, self.handler.handle, bytes(raw), ("192.0.2.9", 6), "udp")
        self.assertEqual((self.handler.counters.bad_fingerprint, self.handler.counters.responses), (1, 0))

    def test_other_shapes_decoded(self) -> None:
        """Anything else of those lengths takes the general path: one other 4-byte attribute (420 for an
        unknown comprehension-required one), another method, an indication, no magic cookie."""
        unknown = request((0x0030, b"\0\0\0\0"), fingerprint=False)
        self.assertEqual(len(unknown), 28)
        answer = decode(self.handler.handle(unknown, ("192.0.2.9", 6), "udp") or b"")
        self.assertEqual(answer.get(AttrType.ERROR_CODE)[0], ErrorCode.UNKNOWN_ATTRIBUTE)
        self.assertIsNone(self.handler.handle(request(msg_class=MessageClass.INDICATION, fingerprint=False),
                                              ("192.0.2.9", 6), "udp"))
        self.handler.handle(request(tid=CLASSIC_TID, fingerprint=False), ("192.0.2.9", 6), "udp")
        self.assertEqual(len(self.decoded), 3)
