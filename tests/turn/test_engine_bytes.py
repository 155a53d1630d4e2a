"""Requests written out as bytes, as RFC 8489 / RFC 8656 lay them out, read back by hand.

The other engine tests build requests and read responses with our own
codec, so a bug made twice (in the encoder and the decoder alike) could pass
them.  Here neither side uses it: the request is hex, the MAC is computed
with :mod:`hmac` from the RFC's formula, and the response is walked byte by
byte.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from twisted.trial.unittest import SynchronousTestCase

from tests.turn.support import REALM, Client, make_engine

MAGIC = bytes.fromhex("2112a442")
TID = bytes(range(1, 13))


def attributes(message: bytes) -> dict[int, bytes]:
    """Every attribute of a STUN message, by type (first one wins), walked by hand (RFC 8489 §14)."""
    length = struct.unpack("!H", message[2:4])[0]
    assert len(message) == 20 + length, "the length field counts everything after the header"
    out: dict[int, bytes] = {}
    pos = 20
    while pos < len(message):
        kind, size = struct.unpack("!HH", message[pos:pos + 4])
        out.setdefault(kind, message[pos + 4:pos + 4 + size])
        pos += 4 + size + (-size % 4)
    return out


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)


class HandWrittenAllocateTests(SynchronousTestCase):
    def test_challenge_then_allocate(self) -> None:
        """The RFC 8656 §7.2 exchange in bytes: 401 with REALM and NONCE, then a signed Allocate and its relayed address."""
        engine, _ = make_engine()
        client = Client(engine)
        # Allocate request (0x0003), 8 bytes of attributes: REQUESTED-TRANSPORT (0x0019) = UDP (17).
        request = bytes.fromhex("0003 0008") + MAGIC + TID + bytes.fromhex("0019 0004 11000000")
        reply = engine.handle_client_packet(client.five_tuple, request, client.to_client, now=0)
        assert reply is not None
        self.assertEqual(reply[:2], bytes.fromhex("0113"))  # Allocate error response
        self.assertEqual((reply[4:8], reply[8:20]), (MAGIC, TID))
        attrs = attributes(reply)
        self.assertEqual(attrs[0x0009][:4], bytes.fromhex("00000401"))  # ERROR-CODE class 4, number 01: 401
        self.assertEqual(attrs[0x0014], REALM.encode())
        nonce = attrs[0x0015]
        self.assertTrue(nonce.startswith(b"obMatJos2"))  # RFC 8489 §9.2: the nonce cookie

        # The signed request: USERNAME, REALM, NONCE, then MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1
        # with key MD5(username ":" realm ":" password), over the message up to the attribute, with the
        # length field already counting it.
        body = (tlv(0x0019, bytes.fromhex("11000000")) + tlv(0x0006, b"alice") + tlv(0x0014, REALM.encode())
                + tlv(0x0015, nonce))
        key = hashlib.md5(f"alice:{REALM}:secret-a".encode()).digest()
        tid = bytes(range(21, 33))
        head = bytes.fromhex("0003") + struct.pack("!H", len(body) + 24) + MAGIC + tid
        mac = hmac.new(key, head + body, hashlib.sha1).digest()
        request = head + body + tlv(0x0008, mac)
        reply = engine.handle_client_packet(client.five_tuple, request, client.to_client, now=1)
        assert reply is not None
        self.assertEqual(reply[:2], bytes.fromhex("0103"))  # Allocate success response
        attrs = attributes(reply)
        relayed = attrs[0x0016]  # XOR-RELAYED-ADDRESS
        self.assertEqual(relayed[1], 0x01)  # IPv4
        port = struct.unpack("!H", relayed[2:4])[0] ^ 0x2112
        address = bytes(a ^ b for a, b in zip(relayed[4:8], MAGIC))
        self.assertEqual(address, bytes((203, 0, 113, 5)))  # the advertised relay address
        self.assertTrue(50000 <= port <= 50099)
        self.assertEqual(struct.unpack("!I", attrs[0x000D])[0], 600)  # LIFETIME: the default
        # The response is signed with the same key: check its MAC by the same formula.
        end = reply.index(struct.pack("!HH", 0x0008, 20), 20)
        signed = reply[:2] + struct.pack("!H", end + 24 - 20) + reply[4:end]
        self.assertEqual(attributes(reply)[0x0008], hmac.new(key, signed, hashlib.sha1).digest())
