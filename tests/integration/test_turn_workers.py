"""``[turn] workers = 2`` under twistd: both processes allocate and relay, metrics add up, SIGTERM leaves no child."""

from __future__ import annotations

import os
import re
import signal
import socket
import select
import subprocess
import time
import urllib.request

from twisted.trial import unittest

from tests.turn import msgs
from tests.support import TWISTD, Lines, free_port
from webrtcstack.stun.constants import AttrType, MessageClass, Method
from webrtcstack.turn.adapters.workers import REPORT_INTERVAL_S
from webrtcstack.turn.auth import long_term_key

USER, PASSWORD, REALM = "glokta", "practical-frost", "adua"
KEY = long_term_key(USER, REALM, PASSWORD)
CLIENTS = 64
RELAY_LOW, RELAY_HIGH = 41000, 41999


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces; the fields after the last ")" are fixed.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(name))
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """The pids still alive after waiting up to ``timeout``.

    Waits on a pidfd per process (readable once the process has exited),
    so it wakes on the exit itself, also for processes that are not our
    children.
    """
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass
    try:
        deadline = time.monotonic() + timeout
        waiting = set(fds)
        while waiting and time.monotonic() < deadline:
            ready, _, _ = select.select(list(waiting), [], [], deadline - time.monotonic())
            waiting -= set(ready)
    finally:
        for fd in fds:
            os.close(fd)
    return [p for p in pids if alive(p)]


def exchange(sock: socket.socket, data: bytes) -> msgs.Message:
    """Send one request and read its reply (blocking, with the socket's timeout)."""
    sock.send(data)
    return msgs.decode(sock.recv(65535))


def allocate(sock: socket.socket) -> tuple[tuple[str, int], bytes]:
    """A UDP allocation (401 first, then signed); the relayed address and the nonce."""
    transport = [(AttrType.REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))]
    challenge = exchange(sock, msgs.encode(Method.ALLOCATE, MessageClass.REQUEST, os.urandom(12), transport))
    nonce = challenge.get(AttrType.NONCE)
    tid = os.urandom(12)
    signed = transport + [(AttrType.USERNAME, USER.encode()), (AttrType.REALM, REALM.encode()), (AttrType.NONCE, nonce)]
    reply = exchange(sock, msgs.encode(Method.ALLOCATE, MessageClass.REQUEST, tid, signed, key=KEY, fingerprint=True))
    assert reply.msg_class == MessageClass.SUCCESS, reply.get(AttrType.ERROR_CODE)
    relayed = msgs.parse_xor_address(reply.get(AttrType.XOR_RELAYED_ADDRESS), tid)
    assert relayed is not None
    return relayed, nonce


def signed_request(sock: socket.socket, nonce: bytes, method: int, attrs: list[tuple[int, bytes]],
                   tid: bytes) -> msgs.Message:
    """A request with long-term credentials; its reply."""
    signed = attrs + [(AttrType.USERNAME, USER.encode()), (AttrType.REALM, REALM.encode()), (AttrType.NONCE, nonce)]
    return exchange(sock, msgs.encode(method, MessageClass.REQUEST, tid, signed, key=KEY, fingerprint=True))


class TurnWorkersTests(unittest.TestCase):
    timeout = 90

    def setUp(self) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.path = os.path.abspath(self.mktemp())
        with open(self.path, "w") as f:
            f.write(f"[stack]\ndrain_seconds = 2\n[turn]\nlisten = 127.0.0.1:{self.port}\nrealm = {REALM}\n"
                    f"relay_ip = 127.0.0.1\nrelay_ports = {RELAY_LOW}-{RELAY_HIGH}\nallow_loopback_peers = yes\n"
                    f"users = {USER}:{PASSWORD}\nworkers = 2\nunauthenticated_replies_per_second = 1000\nuser_quota = 100\n"
                    f"[http]\nenabled = no\n"
                    f"[metrics]\nlisten = 127.0.0.1:{self.metrics_port}\n")
        self.proc = subprocess.Popen(TWISTD + ["-n", "--pidfile=", "--logfile=-", "webrtcstack", "-c", self.path],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=os.path.dirname(self.path))
        assert self.proc.stdout is not None
        # The processes say when they serve; the test reads those lines (read by a thread as they come).
        self.lines = Lines(self.proc.stdout)
        self.addCleanup(self.lines.close)  # runs after kill_all: the pipe is at its end by then
        self.addCleanup(self.kill_all)
        self.lines.wait(r"TURN worker 1 of 2 ready", 30)
        self.lines.wait(r"^(?!.*turn-worker-1).*webrtcstack ready: ", 30, rescan=True)
        self.children = children_of(self.proc.pid)
        self.assertEqual(len(self.children), 1, self.output())

    def output(self) -> str:
        return self.lines.text()

    def kill_all(self) -> None:
        for pid in [self.proc.pid] + getattr(self, "children", []):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def wait_metric(self, pattern: str, timeout: float = 10) -> str:
        """The metrics text once it matches ``pattern``.

        The one place this module re-reads something: a worker publishes its
        counters to the main process once per ``REPORT_INTERVAL_S`` by design,
        over a pipe the test cannot see, so the test reads /metrics at that
        cadence until the worker's next report is in (bounded by ``timeout``).
        """
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"twistd exited: {self.output()}")
            try:
                text = self.metrics()
            except OSError:
                text = ""
            if re.search(pattern, text):
                return text
            time.sleep(REPORT_INTERVAL_S / 4)
        self.fail(f"no {pattern!r} in the metrics:\n{text}\n{self.output()}")

    def client(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def test_both_processes_allocate_and_relay(self) -> None:
        """Client ports get STUN Binding answers and allocations from both shards' relay ranges; each shard relays one packet each way; the metrics sum both exactly."""
        # The kernel spreads client ports over the two processes by a hash of
        # the 4-tuple: the test opens clients until each shard has served at
        # least one (and at least 8 in all), so it never hopes a fixed number
        # was enough.  Each allocation's relayed port says which shard served it.
        middle = RELAY_LOW + (RELAY_HIGH - RELAY_LOW + 1) // 2
        clients: list[socket.socket] = []
        allocations: list[tuple[tuple[str, int], bytes]] = []
        shard0: list[int] = []
        shard1: list[int] = []
        while len(clients) < 8 or not (shard0 and shard1):
            self.assertLess(len(clients), CLIENTS, f"{CLIENTS} clients and one shard served none: {allocations}")
            sock = self.client()
            reply = exchange(sock, msgs.encode(Method.BINDING, MessageClass.REQUEST, os.urandom(12), []))
            self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
            clients.append(sock)
            allocations.append(allocate(sock))
            port = allocations[-1][0][1]
            self.assertTrue(RELAY_LOW <= port <= RELAY_HIGH, port)
            (shard0 if port < middle else shard1).append(len(clients) - 1)
        relayed = [address for address, _ in allocations]

        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(peer.close)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(5)
        peer_addr = peer.getsockname()
        for index in (shard0[0], shard1[0]):
            sock = clients[index]
            tid = os.urandom(12)
            reply = signed_request(sock, allocations[index][1], Method.CREATE_PERMISSION,
                                   [(AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*peer_addr, tid))], tid)
            self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
            tid = os.urandom(12)
            sock.send(msgs.encode(Method.SEND, MessageClass.INDICATION, tid,
                                  [(AttrType.XOR_PEER_ADDRESS, msgs.xor_address(*peer_addr, tid)),
                                   (AttrType.DATA, b"to peer %d" % index)]))
            data, source = peer.recvfrom(65535)
            self.assertEqual((data, source), (b"to peer %d" % index, relayed[index]))
            peer.sendto(b"to client %d" % index, relayed[index])
            indication = msgs.decode(sock.recv(65535))
            self.assertEqual((indication.method, indication.get(AttrType.DATA)), (Method.DATA, b"to client %d" % index))

        # Wait until the worker's report includes its relayed packets (one each way).
        text = self.wait_metric(r'webrtcstack_turn_relayed_packets_total\{direction="to_client"\} 2\.0', 10)
        created = re.search(r'webrtcstack_turn_allocations_created_total\{family="ipv4",transport="udp"\} (\S+)', text)
        self.assertIsNotNone(created, text)
        self.assertEqual(float(created.group(1)), len(clients))  # type: ignore[union-attr]
        per_shard = {int(s): float(v) for s, v in
                     re.findall(r'webrtcstack_turn_shard_allocations_created_total\{shard="(\d)"\} (\S+)', text)}
        self.assertEqual(per_shard, {0: len(shard0), 1: len(shard1)})
        relayed_packets = dict(re.findall(r'webrtcstack_turn_relayed_packets_total\{direction="(\w+)"\} (\S+)', text))
        self.assertEqual(relayed_packets, {"to_peer": "2.0", "to_client": "2.0"})

    def test_sigterm_stops_every_process(self) -> None:
        """SIGTERM to twistd, with allocations up in both, drains and stops the main process and its worker: no process is left."""
        for _ in range(16):
            allocate(self.client())
        self.proc.send_signal(signal.SIGTERM)
        self.lines.wait("draining", 30)
        self.assertIn(self.proc.wait(30), (0, -signal.SIGTERM))
        self.assertEqual(wait_gone(self.children), [])

    def test_sighup_reaches_the_worker(self) -> None:
        """SIGHUP to twistd makes the worker re-read the config file too (its log says what it applied)."""
        with open(self.path) as f:
            text = f.read()
        with open(self.path, "w") as f:
            f.write(text.replace("user_quota = 100", "user_quota = 50"))
        self.proc.send_signal(signal.SIGHUP)
        self.lines.wait(r"^(?!.*turn-worker-1).*reloaded.*user_quota", 10)
        self.lines.wait(r"turn-worker-1.*reloaded.*user_quota", 10, rescan=True)
        self.assertEqual(children_of(self.proc.pid), self.children)

    def test_worker_dies_with_the_parent(self) -> None:
        """A worker whose parent is killed outright (SIGKILL) stops too."""
        self.proc.kill()
        self.proc.wait(10)
        self.assertEqual(wait_gone(self.children), [])
