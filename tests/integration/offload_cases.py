"""The kernel offload on real sockets, real XDP: run only inside a loopback-only network namespace.

Not collected by ``trial tests`` (no ``test_`` prefix): ``test_turn_offload.py``
runs this module with trial under ``unshare -n`` (a namespace the test makes,
with only ``lo``), so the XDP program is never attached to the host's
interfaces.  Every case refuses to run anywhere else.

* the TURN interop suite again with ``kernel_offload = on`` (coturn's
  ``turnutils_uclient`` and aioice relay-only), with the kernel shown to carry
  the UDP channels (its counters move; the Python path's share stays zero);
* permission expiry and deallocation stop the forwarding at once, and a peer
  the policy denies never gets a byte;
* two relay-only clients of this server reach each other in one pass;
* the program is on ``lo`` while the stack runs and gone after it stops or is
  killed (``kill -9``, by PID);
* ``on`` refuses to start when the program cannot be attached (exit 2, one line
  naming the cause); ``auto`` starts on the Python path with one log line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests import support
from tests.integration import test_turn_aioice, test_turn_uclient
from tests.integration.test_turn_sockets import SocketClient
from tests.turn import msgs
from tests.turn.stack import TurnStack
from webrtcstack.stun.constants import AttrType, MessageClass, Method
from webrtcstack.turn.adapters.offload import OffloadService, interfaces_up

ON = "kernel_offload = on\n"


def in_test_namespace() -> None:
    """Fail unless this process is in the loopback-only namespace test_turn_offload made."""
    names = [name for _, name in socket.if_nameindex()]
    if os.environ.get("WEBRTCSTACK_NETNS") != "yes" or names != ["lo"] or interfaces_up() != ["lo"]:
        raise unittest.FailTest(f"offload_cases runs only inside the namespace test_turn_offload.py makes "
                                f"(interfaces here: {names})")


def xdp_on_lo() -> bool:
    """Whether an XDP program is attached to ``lo`` (``ip -j link``)."""
    out = subprocess.run(["ip", "-j", "link", "show", "lo"], capture_output=True, text=True, check=True).stdout
    return any("xdp" in link for link in json.loads(out))


def offload_of(stack: TurnStack) -> OffloadService:
    return next(s for s in stack.top if isinstance(s, OffloadService))


class UclientOffloadTests(test_turn_uclient.UclientInteropTests):
    """coturn's uclient suite with the offload on: UDP channels ride the kernel, the rest the Python path."""

    stack_extra = ON

    def setUp(self) -> Any:
        in_test_namespace()
        return super().setUp()

    def assert_channels_carried_it(self) -> None:
        super().assert_channels_carried_it()
        offload = offload_of(self.stack)
        self.assertIsNotNone(offload.program, offload.unavailable)
        offload.routes.collect()
        counters = self.stack.engine.counters
        udp = any(transport == "udp" for _, transport in counters.allocations_total)
        if udp:
            # every ChannelData went through the map: its counters moved, the Python path relayed none
            self.assertGreaterEqual(counters.offload_packets_to_peer, 40)
            self.assertGreaterEqual(counters.offload_packets_to_client, 40)
            self.assertEqual(counters.packets_to_peer - counters.offload_packets_to_peer, 0)
            self.assertEqual(counters.packets_to_client - counters.offload_packets_to_client, 0)
        else:
            self.assertEqual((counters.offload_packets_to_peer, counters.offload_packets_to_client), (0, 0))

    def assert_indications_carried_it(self) -> None:
        super().assert_indications_carried_it()
        counters = self.stack.engine.counters
        self.assertEqual((counters.offload_packets_to_peer, counters.offload_packets_to_client), (0, 0))


class AioiceOffloadTests(test_turn_aioice.AioiceRelayTests):
    """aioice's relay-only agents with the offload on (aioice binds channels once a pair is chosen)."""

    stack_extra = ON

    def setUp(self) -> None:
        in_test_namespace()
        super().setUp()

    @defer.inlineCallbacks
    def run_agents(self, transport: str) -> Any:
        yield super().run_agents(transport)
        offload_of(self.stack).routes.collect()
        counters = self.stack.engine.counters
        if transport == "udp":
            self.assertGreater(counters.offload_packets_to_peer, 0)
            self.assertGreater(counters.offload_packets_to_client, 0)
        else:
            self.assertEqual(counters.offload_packets_to_peer, 0)


class OffloadBehaviourTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        in_test_namespace()

    def start(self, extra: str = "") -> TurnStack:
        stack = TurnStack(extra=ON + extra)
        stack.start()
        self.addCleanup(stack.stop)
        self.assertIsNotNone(offload_of(stack).program)
        return stack

    def udp(self, host: str = "127.0.0.1") -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        self.addCleanup(sock.close)
        return sock

    @defer.inlineCallbacks
    def bound_channel(self, stack: TurnStack, peer: socket.socket) -> Any:
        """A UDP allocation with channel 0x4001 bound to ``peer``; returns (client, relayed address)."""
        client = SocketClient("127.0.0.1", stack.port)
        self.addCleanup(client.close)
        reply = yield client.request(Method.ALLOCATE, [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))])
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
        relayed = msgs.parse_xor_address(reply.get(AttrType.XOR_RELAYED_ADDRESS), reply.transaction_id)
        tid = os.urandom(12)
        reply = yield client.request(Method.CHANNEL_BIND, [
            (AttrType.CHANNEL_NUMBER, b"\x40\x01\x00\x00"),
            (AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*peer.getsockname()[:2], tid))], tid)
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS, reply.get(AttrType.ERROR_CODE))
        defer.returnValue((client, relayed))

    @defer.inlineCallbacks
    def assert_both_ways(self, stack: TurnStack, client: Any, peer: socket.socket, relayed: Any, tag: bytes) -> Any:
        """One datagram each way, carried by the kernel (its counters move, the Python path's do not)."""
        counters = stack.engine.counters
        python_before = (counters.packets_to_peer - counters.offload_packets_to_peer,
                         counters.packets_to_client - counters.offload_packets_to_client)
        client.send(b"\x40\x01" + len(tag).to_bytes(2, "big") + tag)
        data, source = yield support.recv_within(peer)
        self.assertEqual((data, source[:2]), (tag, relayed))
        peer.sendto(tag + b"-back", relayed)
        self.assertEqual((yield client.recv()), b"\x40\x01" + (len(tag) + 5).to_bytes(2, "big") + tag + b"-back")
        offload_of(stack).routes.collect()
        self.assertEqual((counters.packets_to_peer - counters.offload_packets_to_peer,
                          counters.packets_to_client - counters.offload_packets_to_client), python_before)

    @defer.inlineCallbacks
    def assert_nothing_arrives(self, sock: socket.socket, within: float = 0.5) -> Any:
        """A bounded wait for a datagram that must not come."""
        try:
            data = yield support.recv_within(sock, within)
        except defer.TimeoutError:
            return
        self.fail(f"received {data!r}")

    @defer.inlineCallbacks
    def test_deallocation_stops_forwarding_at_once(self) -> Any:
        stack = self.start()
        peer = self.udp()
        client, relayed = yield self.bound_channel(stack, peer)
        yield self.assert_both_ways(stack, client, peer, relayed, b"before")
        c2p = offload_of(stack).program.maps["c2p"]
        self.assertEqual(set(c2p.items()), set(c2p.keys()))  # the batch read sees what the key walk sees
        self.assertEqual(len(c2p.keys()), 1)
        reply = yield client.request(Method.REFRESH, [(AttrType.LIFETIME, bytes(4))])
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
        self.assertEqual(offload_of(stack).program.maps["c2p"].keys(), [])
        self.assertEqual(offload_of(stack).program.maps["p2c"].keys(), [])
        peer.sendto(b"after", relayed)
        client.send(b"\x40\x01\x00\x05after")
        yield self.assert_nothing_arrives(peer)
        yield self.assert_nothing_arrives(client.sock)

    @defer.inlineCallbacks
    def test_permission_expiry_stops_forwarding_at_once(self) -> Any:
        """The permission lapses (the engine's clock is moved past it): the peer's datagrams stop at once;
        the client's ChannelData still reaches the peer (the channel is bound), on the Python path."""
        stack = self.start()
        peer = self.udp()
        client, relayed = yield self.bound_channel(stack, peer)
        yield self.assert_both_ways(stack, client, peer, relayed, b"before")
        stack.engine.handle_timer(now=reactor.seconds() + stack.engine.settings.permission_lifetime_s + 1)
        self.assertEqual(offload_of(stack).program.maps["p2c"].keys(), [])
        peer.sendto(b"unpermitted", relayed)
        yield self.assert_nothing_arrives(client.sock)
        counters = stack.engine.counters
        before = counters.packets_to_peer
        client.send(b"\x40\x01\x00\x05bound")
        data, _ = yield support.recv_within(peer)
        self.assertEqual(data, b"bound")
        self.assertEqual(counters.packets_to_peer, before + 1)

    @defer.inlineCallbacks
    def test_two_relayed_clients_talk_in_one_pass(self) -> Any:
        """Two clients whose peers are each other's relayed addresses (relay-only on both sides): ChannelData
        from one reaches the other as ChannelData on its own channel, both hops in the kernel."""
        stack = self.start()
        allocate = [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))]
        a, b = SocketClient("127.0.0.1", stack.port), SocketClient("127.0.0.1", stack.port)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        relayed = {}
        for name, client in (("a", a), ("b", b)):
            reply = yield client.request(Method.ALLOCATE, allocate)
            relayed[name] = msgs.parse_xor_address(reply.get(AttrType.XOR_RELAYED_ADDRESS), reply.transaction_id)
        for client, number, other in ((a, b"\x40\x01", relayed["b"]), (b, b"\x40\x07", relayed["a"])):
            tid = os.urandom(12)
            reply = yield client.request(Method.CHANNEL_BIND, [(AttrType.CHANNEL_NUMBER, number + b"\0\0"),
                                                               (AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*other, tid))], tid)
            self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
        counters = stack.engine.counters
        a.send(b"\x40\x01\x00\x05hello")
        self.assertEqual((yield b.recv()), b"\x40\x07\x00\x05hello")
        b.send(b"\x40\x07\x00\x02hi")
        self.assertEqual((yield a.recv()), b"\x40\x01\x00\x02hi")
        offload_of(stack).routes.collect()
        self.assertEqual((counters.offload_packets_to_peer, counters.offload_packets_to_client), (2, 2))
        self.assertEqual((counters.packets_to_peer, counters.packets_to_client), (2, 2))

    @defer.inlineCallbacks
    def test_denied_peer_never_gets_a_byte(self) -> Any:
        stack = self.start("denied_peers = 127.0.0.3/32\n")
        denied = self.udp("127.0.0.3")
        client = SocketClient("127.0.0.1", stack.port)
        self.addCleanup(client.close)
        reply = yield client.request(Method.ALLOCATE, [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))])
        tid = os.urandom(12)
        reply = yield client.request(Method.CHANNEL_BIND, [
            (AttrType.CHANNEL_NUMBER, b"\x40\x01\x00\x00"),
            (AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*denied.getsockname()[:2], tid))], tid)
        self.assertEqual(msgs.parse_error_code(reply.get(AttrType.ERROR_CODE)), 403)
        self.assertEqual(offload_of(stack).program.maps["c2p"].keys(), [])
        for _ in range(5):
            client.send(b"\x40\x01\x00\x04deny")
        yield self.assert_nothing_arrives(denied)

    @defer.inlineCallbacks
    def test_program_on_lo_while_running_and_gone_after_stop(self) -> Any:
        stack = TurnStack(extra=ON)
        stack.start()
        self.assertTrue(xdp_on_lo())
        yield stack.stop()
        self.assertFalse(xdp_on_lo())

    def twistd(self, extra: str) -> tuple[subprocess.Popen, str]:
        tmp = tempfile.mkdtemp()
        path = os.path.join(tmp, "stack.ini")
        port = support.free_port()
        with open(path, "w") as f:
            f.write(f"[turn]\nlisten = 127.0.0.1:{port}\nrelay_ip = 127.0.0.1\nstatic_auth_secret = s-123456789\n"
                    f"{extra}[http]\nenabled = no\n[metrics]\nenabled = no\n[stack]\nstate_dir = {tmp}\n")
        proc = subprocess.Popen(support.TWISTD + ["-n", "--pidfile=", "--logfile=-", "webrtcstack", "-c", path],
                                cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=dict(os.environ, XDG_STATE_HOME=tmp))
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait(10)))
        return proc, path

    def test_program_gone_after_kill_9(self) -> None:
        proc, _ = self.twistd(ON)
        lines = support.Lines(proc.stdout)
        self.addCleanup(lines.close)
        lines.wait(r"webrtcstack ready: ", 30)
        self.assertTrue(xdp_on_lo())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # the link's only file descriptor closed as the process exited: the kernel detached the program then
        self.assertFalse(xdp_on_lo())

    def test_on_refuses_to_start_without_it(self) -> None:
        proc, path = self.twistd(ON + "kernel_offload_interfaces = nosuch0\n")
        out, _ = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 2, out.decode(errors="replace"))
        self.assertIn(b"[turn] kernel_offload = on, but attaching XDP to nosuch0: no such interface", out)
        self.assertNotIn(b"Traceback", out)
        self.assertFalse(xdp_on_lo())

    def test_auto_falls_back_with_one_line(self) -> None:
        proc, _ = self.twistd("kernel_offload = auto\nkernel_offload_interfaces = nosuch0\n")
        lines = support.Lines(proc.stdout)
        self.addCleanup(lines.close)
        lines.wait(r"TURN kernel offload unavailable \(attaching XDP to nosuch0: no such interface\); "
                   r"every channel stays on the Python path", 30)
        lines.wait(r"webrtcstack ready: ", 30)
        self.assertFalse(xdp_on_lo())
