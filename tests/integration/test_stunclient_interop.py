# -*- test-case-name: tests.integration.test_stunclient_interop -*-
"""Interop: other STUN implementations against our Binding server on 127.0.0.1.

The server is the stack's own STUN/TURN listeners (``build_turn_services``).

* coturn's ``turnutils_stunclient`` (Debian package ``coturn``) over UDP.  It
  has no TCP mode (its options are ``-p`` port, ``-L`` local address, ``-f``
  RFC 5780), so
* aioice's STUN codec is the client over TCP.

The coturn tool is a hard requirement in CI (``CI=true``): a missing binary
fails the test there, and only skips on a developer machine.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import aioice.stun
from twisted.internet import defer, protocol, reactor, utils
from twisted.trial import unittest

from tests.support import need_tool
from tests.turn.stack import TurnStack
from webrtcstack.stun import BindingHandler

STUNCLIENT = "turnutils_stunclient"
#: coreutils ``timeout`` bounds each client run.
TIMEOUT = shutil.which("timeout") or "/usr/bin/timeout"
REFLEXIVE = re.compile(rb"UDP reflexive addr: ([0-9.]+):([0-9]+)")


class RecordingHandler(BindingHandler):
    """A BindingHandler that remembers every source it answered."""

    def __init__(self) -> None:
        super().__init__("webrtcstack")
        self.sources: list[tuple[str, int]] = []

    def handle(self, raw: bytes, source: tuple[str, int], transport: str) -> bytes | None:
        """Record ``source``, then answer as usual."""
        self.sources.append(source)
        return super().handle(raw, source, transport)


class _AioiceTcpClient(protocol.Protocol):
    """Sends an aioice-built Binding request and parses the reply with aioice."""

    def __init__(self) -> None:
        self.buffer = b""
        self.reply: defer.Deferred[aioice.stun.Message] = defer.Deferred()
        self.request = aioice.stun.Message(
            message_method=aioice.stun.Method.BINDING, message_class=aioice.stun.Class.REQUEST)

    def connectionMade(self) -> None:
        self.transport.write(bytes(self.request))

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= 20:
            length = int.from_bytes(self.buffer[2:4], "big")
            if len(self.buffer) >= 20 + length and not self.reply.called:
                self.reply.callback(aioice.stun.parse_message(self.buffer[:20 + length]))


class StunclientInteropTests(unittest.TestCase):
    """Third-party clients get their reflexive address from our server."""

    timeout = 20

    def listen(self, handler: BindingHandler | None = None) -> TurnStack:
        """The stack's STUN/TURN listeners on 127.0.0.1 (UDP and TCP, one port), stopped at cleanup."""
        stack = TurnStack()
        if handler is not None:
            stack.driver.engine.binding = handler
        stack.start()
        self.addCleanup(stack.stop)
        return stack

    @defer.inlineCallbacks
    def test_turnutils_stunclient_udp(self) -> Any:
        """turnutils_stunclient prints the reflexive address our server saw, over UDP."""
        tool = need_tool(STUNCLIENT)
        handler = RecordingHandler()
        stack = self.listen(handler)
        # ``timeout`` bounds the tool; it retries on its own if a datagram is lost.
        out, err, code = yield utils.getProcessOutputAndValue(
            TIMEOUT, ["10", tool, "-p", str(stack.port), "127.0.0.1"], env=os.environ)
        self.assertEqual(code, 0, (out, err))
        match = REFLEXIVE.search(out)
        self.assertIsNotNone(match, out)
        assert match is not None
        printed = (match.group(1).decode(), int(match.group(2)))
        self.assertIn(printed, handler.sources)
        self.assertEqual(handler.counters.malformed + handler.counters.bad_fingerprint, 0)
        self.assertGreaterEqual(handler.counters.responses, 1)
        self.assertNotIn("malformed", stack.engine.counters.dropped)

    @defer.inlineCallbacks
    def test_aioice_tcp(self) -> Any:
        """aioice's codec, over TCP, parses our response and finds its own address and transaction id."""
        stack = self.listen()
        client = yield protocol.ClientCreator(reactor, _AioiceTcpClient).connectTCP("127.0.0.1", stack.port)
        self.addCleanup(client.transport.loseConnection)
        reply = yield client.reply
        self.assertEqual(reply.transaction_id, client.request.transaction_id)
        self.assertEqual(reply.message_class, aioice.stun.Class.RESPONSE)
        local = client.transport.getHost()
        self.assertEqual(reply.attributes["XOR-MAPPED-ADDRESS"], ("127.0.0.1", local.port))
        self.assertEqual(reply.attributes["SOFTWARE"], "webrtcstack")
        self.assertIn("FINGERPRINT", reply.attributes)
