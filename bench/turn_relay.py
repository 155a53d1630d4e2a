#!/usr/bin/env python3
"""TURN relay benchmark: our server against coturn's ``turnserver``, same flags, one run.

Measures, for each server:

* relayed packets/s, loss and **server CPU µs per relayed packet** (from
  ``/proc/PID/stat``) with coturn's ``turnutils_uclient`` → server →
  ``turnutils_peer`` echo → server → client, at paced loads:
  ``-m 20 -z 1`` (≈ 20,000 echoed messages/s = 40,000 relayed packets/s) and
  ``-m 10 -z 5`` (≈ 2,000 messages/s = 4,000 relayed packets/s), over UDP
  with channels, UDP with Send/Data indications, and TCP with channels;
* allocations per second and **server CPU µs per allocation** (a pipelined
  Python client, 3 rounds of 3,000 UDP sockets with 256 exchanges in flight,
  each doing the full 401 + Allocate exchange), with the generator's own CPU
  per allocation beside it;
* RSS per 1,000 idle allocations.

A relayed packet is one leg through the server (client→peer or
peer→client); each echoed message is two.  On a 2-core machine the load
generator, the echo peer and the server share the cores, so packets/s "flat
out" swing a lot; CPU per packet and loss at a fixed rate are the stable
figures.

Usage::

    python bench/turn_relay.py            # both servers, full run (~2 min)
    python bench/turn_relay.py --quick    # shorter runs
    python bench/turn_relay.py --only ours
    python bench/turn_relay.py --allocations-only
    python bench/turn_relay.py --allocations-only --workers 1 2   # ours with [turn] workers = 1 and 2

With ``--workers``, ours is run once per value (``[turn] workers``, the
SO_REUSEPORT worker processes); its CPU and RSS are those of the main
process and its workers together.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER, PASSWORD, REALM = "bench", "bench-password", "bench.realm"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOST = re.compile(rb"Total lost packets (\d+) \(([\d.]+)%\)")
TOTALS = re.compile(rb"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")
#: uclient's once-a-second progress line: seconds since start, messages sent and received so far
PROGRESS = re.compile(rb"^(\d+): : start_mclient: msz=\d+, tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", re.M)

OUR_SERVER = r'''
import sys
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor
from webrtcstack.config import load_config
from webrtcstack.service import build_service
port, user, password, realm, workers, path, offload = sys.argv[1:8]
with open(path, "w") as f:
    f.write(f"""
[stack]
drain_seconds = 0
[turn]
workers = {workers}
listen = 127.0.0.1:{port}
realm = {realm}
relay_ip = 127.0.0.1
relay_ports = 20000-32767
allow_loopback_peers = yes
users = {user}:{password}
static_auth_secret = bench-secret-123
user_quota = 0
total_quota = 100000
unauthenticated_replies_per_second = 100000
kernel_offload = {offload}
[http]
enabled = no
[metrics]
enabled = no
""")
top = build_service(load_config(path), reactor, install_signals=False)
top.startService()
reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
reactor.run()
'''


def free_port() -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (our ``[turn] workers``)."""
    pids = [pid]
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if int(_stat(int(name))[1]) == pid:
                    pids.append(int(name))
            except (OSError, IndexError):
                continue
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_cpu_seconds() -> float:
    """CPU of every process on the machine: utime + stime + cutime + cstime from each /proc/PID/stat.

    Kernel threads (ksoftirqd, kworkers) are processes here too.  The children's fields keep the
    sum whole when a process ends within the window (the load generator, reaped by this script).
    Not /proc/stat: on these VMs it undercounts under loopback packet load (issue 15).
    """
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = _stat(int(name))
            except (OSError, IndexError):
                continue
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def wait_for_binding(port: int, proc: subprocess.Popen, limit: float = 15.0) -> None:
    request = struct.pack("!HHI", 1, 0, 0x2112A442) + os.urandom(12)
    deadline = time.monotonic() + limit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("server exited at start")
            s.sendto(request, ("127.0.0.1", port))
            try:
                s.recv(2048)
                return
            except OSError:
                continue
    raise RuntimeError("server did not answer")


def start_ours(port: int, tmp: str, workers: int = 1, offload: str = "off") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    path = os.path.join(tmp, f"ours-{workers}-{offload}.ini")
    return subprocess.Popen([sys.executable, "-c", OUR_SERVER, str(port), USER, PASSWORD, REALM, str(workers), path,
                             offload], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_coturn(port: int, tmp: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["turnserver", "-n", "--listening-ip", "127.0.0.1", "--listening-port", str(port),
         "--relay-ip", "127.0.0.1", "--min-port", "20000", "--max-port", "32767",
         "--allow-loopback-peers", "--lt-cred-mech", "--user", f"{USER}:{PASSWORD}", "--realm", REALM,
         "--no-tls", "--no-dtls", "--no-cli", "--no-stdout-log", "--log-file", os.path.join(tmp, "coturn.log"),
         "--pidfile", os.path.join(tmp, "coturn.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_uclient(port: int, peer_port: int, flags: list[str], clients: int, interval_ms: int, messages: int,
                pid: int, generators: int = 1) -> dict[str, float]:
    """``generators`` uclient processes at once, each with ``clients`` sessions; figures for them all."""
    args = ["turnutils_uclient", *flags, "-u", USER, "-w", PASSWORD, "-e", "127.0.0.1", "-r", str(peer_port),
            "-m", str(clients), "-z", str(interval_ms), "-n", str(messages), "-l", "120", "-p", str(port),
            "127.0.0.1"]
    all0, cpu0, t0 = machine_cpu_seconds(), cpu_seconds(pid), time.monotonic()
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(generators)]
    texts = [proc.communicate(timeout=300)[0] for proc in procs]
    cpu1, t1, all1 = cpu_seconds(pid), time.monotonic(), machine_cpu_seconds()
    relayed = 0
    lost_pcts = []
    progress: dict[int, int] = {}
    for text in texts:
        totals = TOTALS.findall(text)
        lost = LOST.search(text)
        sent, received = (int(totals[-1][0]), int(totals[-1][1])) if totals else (0, 0)
        relayed += sent + received  # forward legs that arrived + return legs
        if not received:  # say why: uclient's last lines (an allocation refused, a timeout, ...)
            tail = text.decode(errors="replace").strip().splitlines()[-8:]
            print("    uclient relayed nothing; its last lines:\n      " + "\n      ".join(tail), file=sys.stderr)
        lost_pcts.append(float(lost.group(2)) if lost else 100.0)
        for second, s, r in PROGRESS.findall(text):
            progress[int(second)] = progress.get(int(second), 0) + int(s) + int(r)
    lost_pct = max(lost_pcts)
    # uclient's elapsed time includes allocation and a final wait; the send phase is messages * interval.
    send_s = max(messages * interval_ms / 1000.0, 1e-3)
    pps = relayed / send_s
    if not interval_ms:
        # flat out: the median of the generators' second-by-second progress (legs relayed each second),
        # leaving out the first and last seconds (allocation, and the tail)
        marks = [progress[k] for k in sorted(progress)]
        steps = sorted(b - a for a, b in zip(marks, marks[1:]) if b > a)[1:-1] or [relayed / (t1 - t0)]
        pps = steps[len(steps) // 2]
    return {
        "relayed": relayed, "lost_pct": lost_pct, "cpu_s": cpu1 - cpu0, "wall_s": t1 - t0,
        "pps": pps, "us_per_pkt": (cpu1 - cpu0) / relayed * 1e6 if relayed else float("nan"),
        "all_us_per_pkt": (all1 - all0) / relayed * 1e6 if relayed else float("nan"),
    }


# -- allocations/s --------------------------------------------------------

def _attr(t: int, v: bytes) -> bytes:
    return struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) & 3)


def _message(method: int, tid: bytes, attrs: bytes, key: bytes | None) -> bytes:
    if key is None:
        return struct.pack("!HHI", method, len(attrs), 0x2112A442) + tid + attrs
    header = struct.pack("!HHI", method, len(attrs) + 24, 0x2112A442) + tid
    mac = hmac.new(key, header + attrs, hashlib.sha1).digest()
    return header + attrs + _attr(0x0008, mac)


def _nonce(data: bytes) -> bytes | None:
    pos = 20
    while pos + 4 <= len(data):
        t, n = struct.unpack_from("!HH", data, pos)
        if t == 0x0015:
            return data[pos + 4:pos + 4 + n]
        pos += 4 + n + (-n & 3)
    return None


def allocate_many(port: int, count: int, pid: int, window: int = 256) -> dict[str, float]:
    """Allocate on ``count`` sockets (401 then Allocate each), ``window`` exchanges in flight; keep them idle.

    The generator is kept cheaper per request than a server: the sockets and
    every first request are made before the clock starts, the second request
    is a prebuilt attribute block plus one HMAC, and replies are classified by
    their first two bytes.  Besides allocations/s it returns the server's CPU
    per allocation (``/proc/PID/stat``, the stable figure) and the
    generator's own, since both share the machine's cores.
    """
    key = hashlib.md5(f"{USER}:{REALM}:{PASSWORD}".encode()).digest()
    transport = _attr(0x0019, bytes((17, 0, 0, 0)))
    credentials = transport + _attr(0x0006, USER.encode()) + _attr(0x0014, REALM.encode())
    mi_header = struct.pack("!HH", 0x0008, 20)
    signed_attrs: dict[bytes, bytes] = {}  # nonce -> attribute block (nonces repeat per source and second)
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    by_fd = {s.fileno(): s for s in socks}
    fds = list(by_fd)
    firsts = {fd: _message(0x0003, os.urandom(12), transport, None) for fd in fds}
    tids = iter([os.urandom(12) for _ in range(count * 2)])
    state = dict.fromkeys(fds, 0)  # 0: challenge sent, 1: allocate sent, 2: done
    last_sent: dict[int, float] = {}
    poller = select.epoll(count)
    for fd in fds:
        poller.register(fd, select.EPOLLIN)
    rss0 = rss_kib(pid)
    cpu0, gen0, t0 = cpu_seconds(pid), time.process_time(), time.monotonic()
    started = 0
    in_flight = 0
    done = 0
    retransmits = 0
    last_done = t0
    deadline = t0 + 120

    def start_next(now: float) -> None:
        nonlocal started, in_flight
        fd = fds[started]
        started += 1
        in_flight += 1
        by_fd[fd].send(firsts[fd])
        last_sent[fd] = now

    while started < min(window, count):
        start_next(t0)
    next_check = t0 + 0.5
    while done < count:
        now = time.monotonic()
        if now > deadline:
            break
        for fd, _ in poller.poll(0.1):
            try:
                data = by_fd[fd].recv(4096)
            except OSError:
                continue
            st = state[fd]
            if st == 0 and data[:2] == b"\x01\x13":
                nonce = _nonce(data) or b""
                attrs = signed_attrs.get(nonce)
                if attrs is None:
                    if len(signed_attrs) > 1024:
                        signed_attrs.clear()
                    attrs = signed_attrs[nonce] = credentials + _attr(0x0015, nonce)
                header = struct.pack("!HHI", 0x0003, len(attrs) + 24, 0x2112A442) + next(tids)
                mac = hmac.digest(key, header + attrs, "sha1")
                by_fd[fd].send(header + attrs + mi_header + mac)
                state[fd] = 1
                last_sent[fd] = now
            elif st == 1 and data[:2] in (b"\x01\x03", b"\x01\x13"):
                # (An error here is 437: a retransmitted exchange found the allocation made.)
                state[fd] = 2
                done += 1
                in_flight -= 1
                last_done = now
                if started < count:
                    start_next(now)
        if now >= next_check:  # retransmit what got lost (UDP), after 1 s
            next_check = now + 0.5
            for fd, sent_at in list(last_sent.items()):
                if state[fd] < 2 and now - sent_at > 1.0:
                    by_fd[fd].send(_message(0x0003, next(tids, os.urandom(12)), transport, None))
                    state[fd] = 0
                    last_sent[fd] = now
                    retransmits += 1
    cpu1, gen1 = cpu_seconds(pid), time.process_time()
    elapsed = max(last_done - t0, 1e-6)
    time.sleep(0.5)
    rss1 = rss_kib(pid)
    poller.close()
    for s in socks:
        s.close()
    n = max(done, 1)
    return {"allocations": done, "per_s": done / elapsed, "server_us": (cpu1 - cpu0) / n * 1e6,
            "generator_us": (gen1 - gen0) / n * 1e6, "retransmits": retransmits, "rss_kib": rss1 - rss0}


def allocation_rounds(port: int, pid: int, rounds: int, count: int) -> dict[str, float]:
    """``rounds`` of :func:`allocate_many`; median rate, CPU summed over all rounds."""
    results = [allocate_many(port, count, pid) for _ in range(rounds)]
    done = sum(r["allocations"] for r in results)
    rates = sorted(r["per_s"] for r in results)
    return {
        "allocations": done,
        "per_s": rates[len(rates) // 2],
        "per_s_range": (rates[0], rates[-1]),
        "server_us": sum(r["server_us"] * r["allocations"] for r in results) / max(done, 1),
        "generator_us": sum(r["generator_us"] * r["allocations"] for r in results) / max(done, 1),
        "retransmits": sum(r["retransmits"] for r in results),
        "rss_per_1000_kib": sum(r["rss_kib"] for r in results) * 1000 / max(done, 1),
    }


SCENARIOS = [
    ("UDP channels", []),
    ("UDP Send/Data indications", ["-s"]),
    ("TCP channels", ["-t"]),
]
LOADS = [("40k pkt/s (-m 20 -z 1)", 20, 1), ("4k pkt/s (-m 10 -z 5)", 10, 5)]
#: UDP channels only (what the kernel offload carries): every client sends as fast as it can
#: (two uclient processes: one alone is the bottleneck, at one core)
FLAT_OUT = ("flat out (2 × uclient -m 10 -z 0)", 10, 0)
FLAT_OUT_GENERATORS = 2
#: Three rounds of this many; relay ports 20000-32767 sit below Linux's ephemeral range (32768-60999),
#: so the generator's own sockets never take a port a server wants to relay on.
ALLOCATIONS_PER_ROUND = 3000


def bench_server(name: str, proc: subprocess.Popen, port: int, peer_port: int, quick: bool,
                 relay: bool = True, scenarios: list = SCENARIOS) -> dict:
    wait_for_binding(port, proc)
    pid = proc.pid
    results: dict = {}
    for scenario, flags in scenarios if relay else ():
        for load, clients, interval in LOADS + ([FLAT_OUT] if scenario == "UDP channels" else []):
            messages = (1000 if quick else 3000) // interval if interval else (4000 if quick else 10000)
            r = run_uclient(port, peer_port, flags, clients, interval, messages, pid,
                            generators=1 if interval else FLAT_OUT_GENERATORS)
            results[(scenario, load)] = r
            print(f"  {name:7} {scenario:28} {load:24} relayed {r['relayed']:7.0f}  loss {r['lost_pct']:6.3f}%  "
                  f"{r['pps']:8.0f} pkt/s  CPU {r['us_per_pkt']:6.1f} µs/pkt (server), "
                  f"{r['all_us_per_pkt']:6.1f} µs/pkt (all processes)", flush=True)
    alloc = allocation_rounds(port, pid, 3, 1000 if quick else ALLOCATIONS_PER_ROUND)
    results["alloc"] = alloc
    low, high = alloc["per_s_range"]
    print(f"  {name:7} allocations: {alloc['allocations']:.0f}, median {alloc['per_s']:.0f}/s "
          f"({low:.0f}-{high:.0f}), server CPU {alloc['server_us']:.1f} µs/allocation, "
          f"generator CPU {alloc['generator_us']:.1f} µs/allocation, {alloc['retransmits']} retransmissions, "
          f"RSS {alloc['rss_per_1000_kib'] / 1024:.1f} MiB per 1,000 idle allocations", flush=True)
    return results


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--only", choices=("ours", "coturn"), help="bench one server only")
    parser.add_argument("--allocations-only", action="store_true", help="skip the relayed-packet rows")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], metavar="N",
                        help="run ours with [turn] workers = N (several values: one run each)")
    parser.add_argument("--kernel", action="store_true",
                        help="also run ours with [turn] kernel_offload = on (UDP channels); the whole run then "
                             "happens in a new loopback-only network namespace (unshare -n), as XDP is never "
                             "attached to the host's interfaces")
    args = parser.parse_args()
    if args.kernel and os.environ.get("WEBRTCSTACK_BENCH_NETNS") != "yes":
        if shutil.which("unshare") is None:
            print("--kernel needs unshare (util-linux) and root", file=sys.stderr)
            return 2
        inner = " ".join(["exec", sys.executable] + [repr(a) for a in sys.argv])
        return subprocess.call(["unshare", "-n", "sh", "-c", f"ip link set lo up && {inner}"],
                               env=dict(os.environ, WEBRTCSTACK_BENCH_NETNS="yes"))
    for tool in ("turnutils_uclient", "turnutils_peer") + (() if args.only == "ours" else ("turnserver",)):
        if shutil.which(tool) is None:
            print(f"{tool} not found: install the coturn package", file=sys.stderr)
            return 2
    print(f"machine: {os.cpu_count()} CPUs, {platform_line()}"
          + ("; in a loopback-only network namespace" if os.environ.get("WEBRTCSTACK_BENCH_NETNS") == "yes" else ""))
    peer_port = free_port()
    peer = subprocess.Popen(["turnutils_peer", "-L", "127.0.0.1", "-p", str(peer_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    all_results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            servers = [("ours" if n == 1 else f"ours×{n}", n, "off") for n in args.workers]
            if args.kernel:
                servers.append(("kernel", 1, "on"))
            servers.append(("coturn", 0, ""))
            for name, workers, offload in servers:
                if args.only and not name.startswith(args.only) and not (args.only == "ours" and name == "kernel"):
                    continue
                port = free_port()
                proc = start_ours(port, tmp, workers, offload) if workers else start_coturn(port, tmp)
                if workers > 1:
                    # The workers start once the main process is up; give them time to bind.
                    deadline = time.monotonic() + 20
                    while len(process_tree(proc.pid)) < workers and time.monotonic() < deadline:
                        time.sleep(0.1)
                    time.sleep(1.5)
                try:
                    all_results[name] = bench_server(name, proc, port, peer_port, args.quick,
                                                      relay=not args.allocations_only,
                                                      scenarios=SCENARIOS[:1] if offload == "on" else SCENARIOS)
                finally:
                    stop(proc)
    finally:
        stop(peer)
    if "coturn" in all_results:
        ca = all_results["coturn"]["alloc"]
        for name, results in all_results.items():
            if name != "coturn":
                oa = results["alloc"]
                print(f"{name}: allocations/s {oa['per_s']:.0f} vs coturn {ca['per_s']:.0f} "
                      f"({oa['per_s'] / ca['per_s']:.2f}×), server CPU {oa['server_us']:.1f} vs "
                      f"{ca['server_us']:.1f} µs per allocation")
    if "ours" in all_results and "coturn" in all_results:
        print("\n| scenario | load | ours µs/pkt | coturn µs/pkt | ratio | ours loss | coturn loss |")
        print("|---|---|---|---|---|---|---|")
        for key in all_results["ours"]:
            if key == "alloc":
                continue
            o, c = all_results["ours"][key], all_results["coturn"][key]
            print(f"| {key[0]} | {key[1]} | {o['us_per_pkt']:.1f} | {c['us_per_pkt']:.1f} | "
                  f"{o['us_per_pkt'] / c['us_per_pkt']:.2f}× | {o['lost_pct']:.3f} % | {c['lost_pct']:.3f} % |")
        print("\nEvery process on the machine, CPU µs per relayed packet (server, generator, echo peer, kernel threads):")
        names = [n for n in ("coturn", "ours", "kernel") if n in all_results]
        print("| scenario | load | " + " | ".join(f"{n} all µs/pkt | {n} pkt/s | {n} loss" for n in names) + " |")
        print("|---|---|" + "---|---|---|" * len(names))
        for key in all_results["ours"]:
            if key == "alloc" or key[0] != "UDP channels":
                continue
            cells = []
            for n in names:
                r = all_results[n].get(key)
                cells.append(f"{r['all_us_per_pkt']:.1f} | {r['pps']:.0f} | {r['lost_pct']:.3f} %" if r else " | | ")
            print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
        oa, ca = all_results["ours"]["alloc"], all_results["coturn"]["alloc"]
        print(f"\nAllocations ({oa['allocations']:,.0f} in 3 rounds, 256 exchanges in flight):")
        print("| | ours | coturn | ours ÷ coturn |")
        print("|---|---:|---:|---:|")
        print(f"| allocations/s (median of 3) | {oa['per_s']:.0f} | {ca['per_s']:.0f} | {oa['per_s'] / ca['per_s']:.2f}× |")
        print(f"| server CPU per allocation | {oa['server_us']:.1f} µs | {ca['server_us']:.1f} µs | "
              f"{oa['server_us'] / ca['server_us']:.2f}× |")
        print(f"| generator CPU per allocation | {oa['generator_us']:.1f} µs | {ca['generator_us']:.1f} µs | |")
        print(f"| RSS per 1,000 idle allocations | {oa['rss_per_1000_kib'] / 1024:.1f} MiB | "
              f"{ca['rss_per_1000_kib'] / 1024:.1f} MiB | |")
    return 0


def platform_line() -> str:
    import platform

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, Linux {platform.release()}, Python {platform.python_version()}"


if __name__ == "__main__":
    sys.exit(main())
