"""RFC 5780 on real sockets: coturn's ``turnutils_stunclient -f`` and ``turnutils_natdiscovery -m -f``.

The stack listens on 127.0.0.1 and 127.0.0.2 (both loopback on Linux) with
``nat_discovery = yes``, so it has the four addresses RFC 5780 needs.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from twisted.application import service
from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from tests import support
from webrtcstack.config import ConfigError, parse_config
from webrtcstack.stun.constants import AttrType, MessageClass, Method
from webrtcstack.stun.message import Message, decode, encode
from webrtcstack.turn.adapters.driver import build_turn_services

A1, A2 = "127.0.0.1", "127.0.0.2"


def free_pair() -> int:
    """A port P with UDP P and P+1 free on both addresses."""
    for _ in range(200):
        port = support.free_port(socket.SOCK_DGRAM)
        socks = []
        try:
            for host in (A1, A2):
                for p in (port, port + 1):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    socks.append(s)
                    s.bind((host, p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port pair")


class NatDiscoveryTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.port = free_pair()
        config = parse_config(
            f"[turn]\nlisten = {A1}:{self.port} {A2}:{self.port}\nnat_discovery = yes\n"
            f"static_auth_secret = s-123456789\n[http]\nenabled = no\n", "test.ini")
        self.top = service.MultiService()
        for child in build_turn_services(config, reactor, ("s-123456789",)):
            child.setServiceParent(self.top)
        self.engine = next(s.driver for s in self.top if hasattr(s, "driver")).engine
        self.top.startService()
        self.addCleanup(self.top.stopService)

    @defer.inlineCallbacks
    def tool(self, name: str, *args: str) -> Any:
        path = support.need_tool(name)
        out, err, code = yield utils.getProcessOutputAndValue(path, [*args, "-p", str(self.port), A1], env={})
        defer.returnValue((out + err).decode(errors="replace"))

    @defer.inlineCallbacks
    def test_stunclient_sees_other_address_and_response_origin(self) -> Any:
        text = yield self.tool("turnutils_stunclient", "-f")
        origins = re.findall(r"Response origin: : ([\d.]+:\d+)", text)
        others = re.findall(r"Other addr: : ([\d.]+:\d+)", text)
        # the first answer comes from where it was asked; the change-IP-and-port ones from the other pair
        self.assertEqual(origins[0], f"{A1}:{self.port}", text)
        self.assertEqual(set(origins), {f"{A1}:{self.port}", f"{A2}:{self.port + 1}"}, text)
        self.assertEqual(set(others), {f"{A2}:{self.port + 1}"}, text)

    @defer.inlineCallbacks
    def test_natdiscovery_classifies(self) -> Any:
        text = yield self.tool("turnutils_natdiscovery", "-m", "-f")
        self.assertIn("NAT with Endpoint Independent Mapping!", text)
        self.assertIn("NAT with Endpoint Independent Filtering!", text)
        self.assertNotIn("Not received", text)

    def udp(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((A1, 0))
        sock.setblocking(False)
        self.addCleanup(sock.close)
        return sock

    @defer.inlineCallbacks
    def test_response_port_stays_on_the_source_ip(self) -> Any:
        """RESPONSE-PORT moves the answer to another port of the *same* IP, from the changed address."""
        asker, listener = self.udp(), self.udp()
        target = listener.getsockname()[1]
        asker.sendto(encode(Message(Method.BINDING, MessageClass.REQUEST, os.urandom(12), (
            (AttrType.RESPONSE_PORT, target), (AttrType.CHANGE_REQUEST, 0x04)))), (A1, self.port))
        data, source = yield support.recv_within(listener)
        reply = decode(data)
        self.assertEqual(source, (A2, self.port))
        self.assertEqual(reply.get(AttrType.XOR_MAPPED_ADDRESS), asker.getsockname())
        self.assertEqual(reply.get(AttrType.RESPONSE_ORIGIN), (A2, self.port))

    @defer.inlineCallbacks
    def test_alternate_port_is_stun_only(self) -> Any:
        """The alternate port answers Binding; an Allocate there is dropped (and counted), not served."""
        sock = self.udp()
        sock.sendto(encode(Message(Method.ALLOCATE, MessageClass.REQUEST, os.urandom(12), (
            (AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0))),))), (A1, self.port + 1))
        sock.sendto(encode(Message(Method.BINDING, MessageClass.REQUEST, os.urandom(12), ())), (A1, self.port + 1))
        data, source = yield support.recv_within(sock)
        self.assertEqual(decode(data).msg_class, MessageClass.SUCCESS)
        self.assertEqual(source, (A1, self.port + 1))
        self.assertEqual(self.engine.counters.dropped.get("stun_only"), 1)


class NatDiscoveryConfigTests(unittest.TestCase):
    def test_needs_two_addresses_of_one_family(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config("[turn]\nlisten = 127.0.0.1:3478\nnat_discovery = yes\n", "one.ini")
        self.assertIn("nat_discovery", str(caught.exception))
        self.assertIn("two [turn] listen addresses", str(caught.exception))

    def test_needs_one_port_and_a_different_alternate(self) -> None:
        with self.assertRaises(ConfigError):
            parse_config("[turn]\nlisten = 127.0.0.1:3478 127.0.0.2:3479\nnat_discovery = yes\n", "ports.ini")
        with self.assertRaises(ConfigError) as caught:
            parse_config("[turn]\nlisten = 127.0.0.1:3478 127.0.0.2:3478\nnat_discovery = yes\n"
                         "nat_discovery_port = 3478\n", "alt.ini")
        self.assertIn("nat_discovery_port", str(caught.exception))
