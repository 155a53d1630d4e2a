"""Interop: coturn's ``turnutils_uclient`` and ``turnutils_peer`` against our TURN server on loopback."""

from __future__ import annotations

import re
import signal
from typing import Any

from twisted.internet import defer, error, protocol, reactor, utils
from twisted.trial import unittest

from tests.support import free_port, need_tool
from tests.turn.stack import PASSWORD, SECRET, USER, TurnStack

LOST = re.compile(rb"Total lost packets (\d+) \(([\d.]+)%\)")
SENT = re.compile(rb"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")


class _PeerProtocol(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class UclientInteropTests(unittest.TestCase):
    """Each test runs uclient with 2 clients x 20 messages through us to turnutils_peer and expects no loss."""

    timeout = 60

    def setUp(self) -> Any:
        self.uclient = need_tool("turnutils_uclient")
        peer = need_tool("turnutils_peer")
        self.stack = TurnStack()
        self.stack.start()
        self.addCleanup(self.stack.stop)
        self.peer_port = free_port()
        self.peer = _PeerProtocol()
        self.peer_process = reactor.spawnProcess(
            self.peer, peer, [peer, "-L", "127.0.0.1", "-p", str(self.peer_port)], env=None)
        self.addCleanup(self._stop_peer)

    def _stop_peer(self) -> Any:
        try:
            self.peer_process.signalProcess(signal.SIGKILL)
        except error.ProcessExitedAlready:
            pass
        return self.peer.ended

    @defer.inlineCallbacks
    def run_uclient(self, *flags: str) -> Any:
        args = list(flags) + ["-e", "127.0.0.1", "-r", str(self.peer_port), "-n", "20", "-m", "2", "-l", "170",
                              "-z", "5", "-p", str(self.stack.port), "127.0.0.1"]
        out, err, code = yield utils.getProcessOutputAndValue(self.uclient, args, env={})
        text = out + err
        lost = LOST.search(text)
        self.assertIsNotNone(lost, text.decode(errors="replace")[-2000:])
        self.assertEqual(int(lost.group(1)), 0, text.decode(errors="replace")[-2000:])
        totals = SENT.findall(text)
        self.assertTrue(totals, "no message totals")
        sent, received = totals[-1]
        self.assertEqual((int(sent), int(received)), (40, 40))
        self.assertEqual(code, 0)
        defer.returnValue(text)

    @defer.inlineCallbacks
    def test_udp_channels_static_user(self) -> Any:
        """UDP with channels and a static user: every message comes back."""
        yield self.run_uclient("-u", USER, "-w", PASSWORD)
        self.assertGreater(self.stack.engine.counters.packets_to_peer, 0)
        self.assertGreater(self.stack.engine.counters.channels_active + sum(
            n for (m, r), n in self.stack.engine.counters.requests.items() if m == "channel_bind"), 0)

    @defer.inlineCallbacks
    def test_udp_indications_static_user(self) -> Any:
        """UDP with Send/Data indications (-s): every message comes back."""
        yield self.run_uclient("-s", "-u", USER, "-w", PASSWORD)

    @defer.inlineCallbacks
    def test_tcp_channels_static_user(self) -> Any:
        """TCP with channels: every message comes back and allocations end with the connections."""
        yield self.run_uclient("-t", "-u", USER, "-w", PASSWORD)

    @defer.inlineCallbacks
    def test_tcp_indications_static_user(self) -> Any:
        """TCP with indications: every message comes back."""
        yield self.run_uclient("-t", "-s", "-u", USER, "-w", PASSWORD)

    @defer.inlineCallbacks
    def test_udp_channels_rest_secret(self) -> Any:
        """UDP with a coturn REST API secret (-W): every message comes back."""
        yield self.run_uclient("-W", SECRET, "-u", "carol")

    @defer.inlineCallbacks
    def test_tcp_indications_rest_secret(self) -> Any:
        """TCP with indications and a REST API secret: every message comes back."""
        yield self.run_uclient("-t", "-s", "-W", SECRET, "-u", "carol")
