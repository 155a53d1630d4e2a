"""Interop: coturn's ``turnutils_uclient`` and ``turnutils_peer`` against our TURN server on loopback."""

from __future__ import annotations

import re
import signal
from typing import Any

from twisted.internet import defer, error, protocol, reactor, utils
from twisted.trial import unittest

from tests.support import Event, after_each_call, free_port, need_tool
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
    #: more [turn] keys (the kernel offload's cases run these tests again with it on)
    stack_extra = ""

    def setUp(self) -> Any:
        self.uclient = need_tool("turnutils_uclient")
        peer = need_tool("turnutils_peer")
        self.stack = TurnStack(extra=self.stack_extra)
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

    def requests(self, method: str) -> dict[str, int]:
        """The engine's request count for ``method`` by result (``"ok"`` or an error code)."""
        return {result: n for (m, result), n in self.stack.engine.counters.requests.items() if m == method}

    def assert_relayed_both_ways(self) -> None:
        """The 40 messages went client -> peer and back through our relay."""
        counters = self.stack.engine.counters
        self.assertGreaterEqual(counters.packets_to_peer, 40)
        self.assertGreaterEqual(counters.packets_to_client, 40)

    def assert_channels_carried_it(self) -> None:
        """ChannelBind succeeded for both clients and none failed."""
        bound = self.requests("channel_bind")
        self.assertGreaterEqual(bound.get("ok", 0), 2, bound)
        self.assertEqual(set(bound), {"ok"}, bound)
        self.assert_relayed_both_ways()

    def assert_indications_carried_it(self) -> None:
        """No channel was ever asked for, so Send and Data indications (the only other way) carried the data."""
        self.assertEqual(self.requests("channel_bind"), {})
        self.assertEqual(self.stack.engine.counters.channels_active, 0)
        self.assertEqual(self.requests("create_permission").get("ok", 0) > 0, True, self.requests("create_permission"))
        self.assert_relayed_both_ways()

    @defer.inlineCallbacks
    def assert_allocations_end(self) -> Any:
        """Once uclient has exited and its TCP connections closed, no allocation is left."""
        driver = self.stack.driver
        ended = Event(lambda: self.stack.engine.allocation_count() == 0)
        self.addCleanup(after_each_call(driver, "connection_lost", ended))
        yield ended.wait(10)

    @defer.inlineCallbacks
    def test_udp_channels_static_user(self) -> Any:
        """UDP with channels and a static user: every message comes back, over successfully bound channels."""
        yield self.run_uclient("-u", USER, "-w", PASSWORD)
        self.assert_channels_carried_it()

    @defer.inlineCallbacks
    def test_udp_indications_static_user(self) -> Any:
        """UDP with Send/Data indications (-s): every message comes back, carried by indications, not channels."""
        yield self.run_uclient("-s", "-u", USER, "-w", PASSWORD)
        self.assert_indications_carried_it()

    @defer.inlineCallbacks
    def test_tcp_channels_static_user(self) -> Any:
        """TCP with channels: every message comes back over bound channels, and allocations end with the connections."""
        yield self.run_uclient("-t", "-u", USER, "-w", PASSWORD)
        self.assert_channels_carried_it()
        self.assertGreater(sum(n for (t, _), n in self.stack.engine.counters.allocations_total.items()), 0)
        yield self.assert_allocations_end()

    @defer.inlineCallbacks
    def test_tcp_indications_static_user(self) -> Any:
        """TCP with indications: every message comes back, carried by indications; allocations end with the connections."""
        yield self.run_uclient("-t", "-s", "-u", USER, "-w", PASSWORD)
        self.assert_indications_carried_it()
        yield self.assert_allocations_end()

    @defer.inlineCallbacks
    def test_udp_channels_rest_secret(self) -> Any:
        """UDP with a coturn REST API secret (-W): every message comes back over channels."""
        yield self.run_uclient("-W", SECRET, "-u", "carol")
        self.assert_channels_carried_it()

    @defer.inlineCallbacks
    def test_tcp_indications_rest_secret(self) -> Any:
        """TCP with indications and a REST API secret: every message comes back, carried by indications."""
        yield self.run_uclient("-t", "-s", "-W", SECRET, "-u", "carol")
        self.assert_indications_carried_it()
