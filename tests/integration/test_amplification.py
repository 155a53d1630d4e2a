"""The TURN port is no amplifier: each kind of unauthenticated request, bytes out over bytes in.

A real stack process and a real UDP socket from a fresh address and port.
After each request the test sends a Binding request as a marker: the server
answers one socket's datagrams in order, so every reply to the request has
arrived by the time the marker's answer does (a dropped request shows as no
reply, with no waiting on a clock).
"""

from __future__ import annotations

import os
import socket
import struct

from twisted.trial import unittest

from tests.support import StackProcess, free_port
from tests.turn import msgs
from webrtcstack.stun.constants import AttrType, MessageClass, Method

UDP = (AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))


def request(method: int, attrs: list, fingerprint: bool = False) -> bytes:
    return msgs.encode(method, MessageClass.REQUEST, os.urandom(12), attrs, fingerprint=fingerprint)


def peer(tid_hint: bytes = b"\0" * 12) -> bytes:
    return msgs.xor_address("8.8.8.8", 9, tid_hint)


class AmplificationTests(unittest.TestCase):
    timeout = 60

    def test_unauthenticated_replies_stay_small(self) -> None:
        """No unauthenticated request gets more than 3x its size back, except the well-formed Allocate's 401 (< 4x); Binding exempt."""
        port = free_port(socket.SOCK_DGRAM)
        StackProcess(self, f"[turn]\nlisten = 127.0.0.1:{port}\n[http]\nenabled = no\n[metrics]\nenabled = no\n")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.settimeout(10)  # a bound on a lost marker, never waited for otherwise
        sock.connect(("127.0.0.1", port))
        well_formed_allocates = {"allocate, requested-transport", "allocate, requested-transport, fingerprint",
                                 "allocate, requested-transport, lifetime, fingerprint"}
        cases = {
            "allocate, no attributes": request(Method.ALLOCATE, []),
            "allocate, requested-transport": request(Method.ALLOCATE, [UDP]),
            "allocate, requested-transport, fingerprint": request(Method.ALLOCATE, [UDP], True),
            "allocate, requested-transport, lifetime, fingerprint":
                request(Method.ALLOCATE, [UDP, (AttrType.LIFETIME, struct.pack("!I", 600))], True),
            "refresh": request(Method.REFRESH, []),
            "refresh, lifetime 0": request(Method.REFRESH, [(AttrType.LIFETIME, bytes(4))]),
            "create-permission": request(Method.CREATE_PERMISSION, [(AttrType.XOR_PEER_ADDRESS, peer())]),
            "channel-bind": request(Method.CHANNEL_BIND, [(AttrType.CHANNEL_NUMBER, bytes((0x40, 0, 0, 0))),
                                                          (AttrType.XOR_PEER_ADDRESS, peer())]),
            "connect (RFC 6062)": request(Method.CONNECT, [(AttrType.XOR_PEER_ADDRESS, peer())]),
            "unknown method": msgs.encode(0x0FF, MessageClass.REQUEST, os.urandom(12), []),
            "unknown comprehension-required attribute": request(Method.ALLOCATE, [UDP, (0x0030, b"abcd")]),
            "send indication": msgs.encode(Method.SEND, MessageClass.INDICATION, os.urandom(12),
                                           [(AttrType.XOR_PEER_ADDRESS, peer()), (AttrType.DATA, b"x" * 8)]),
            "channel data": b"\x40\x00\x00\x04abcd",
            "garbage": b"\x00\x01\x00\x00garbage-not-stun-at-all",
        }
        seen = {}
        for name, data in cases.items():
            marker = request(Method.BINDING, [])
            sock.send(data)
            sock.send(marker)
            out = 0
            while True:
                reply = sock.recv(65535)
                if reply[8:20] == marker[8:20]:
                    break
                out += len(reply)
            seen[name] = (len(data), out)
            limit = 4 if name in well_formed_allocates else 3
            self.assertLess(out, limit * len(data), f"{name}: {len(data)} bytes in, {out} out")
        # The well-formed Allocate is still challenged (a real client can go on): the 401 is there.
        self.assertGreater(seen["allocate, requested-transport"][1], 0, seen)
        # Bare Allocate, Refresh and the others are answered, just briefly.
        self.assertEqual(seen["allocate, no attributes"][1], 28, seen)
        self.assertEqual(seen["refresh"][1], 28, seen)
        self.assertEqual(seen["garbage"][1], 0, seen)
