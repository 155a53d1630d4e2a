#!/usr/bin/env python3
"""STUN Binding load generator: requests/s, loss and CPU, ours against coturn.

Usage::

    python bench/stun_binding.py --host 127.0.0.1 --port 3478 [--count N] [--duration S] [--window W]
    python bench/stun_binding.py --compare [--count N] [--duration S] [--window W]

The first form loads a running server.  ``--compare`` starts, one after the
other on loopback ports, coturn's ``turnserver --stun-only`` and our own
server (the stack's own STUN/TURN listeners from ``build_turn_services``, in a
subprocess on the epoll reactor), runs the same load against each, and prints
both side by side.

The load is bounded: at most ``--count`` requests and ``--duration`` seconds,
with at most ``--window`` requests outstanding; a request with no answer
``--loss-timeout`` seconds after the last send is lost.  CPU is user+system
time: the generator's from ``os.times()``, a server's from /proc/PID/stat.
Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COOKIE = b"\x21\x12\xa4\x42"


def request(index: int) -> bytes:
    """A Binding request whose transaction id carries ``index``."""
    return struct.pack("!HH", 0x0001, 0) + COOKIE + struct.pack("!QI", index, 0x57454253)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def check_loopback(host: str) -> None:
    """Refuse anything but a loopback address: this tool must not load real networks."""
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"{host} is not a loopback address")


def run_load(host: str, port: int, count: int, duration_s: float, window: int,
             loss_timeout_s: float, rate: float = 0.0) -> dict[str, Any]:
    """Send up to ``count`` Binding requests in ``duration_s``; count answers.

    :param rate: requests per second at a fixed pace (the window is then not
        applied), or 0 for "as fast as answers come back, ``window`` in flight".
    """
    check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect((host, port))
    sock.setblocking(False)
    answered = bytearray(count)
    received = 0  # distinct answers
    written_off = 0  # requests given up on, so the window can reopen
    stray = 0
    sent = 0
    marker = struct.pack("!I", 0x57454253)
    cpu0 = os.times()
    start = time.monotonic()
    deadline = start + duration_s
    last_progress = start
    while True:
        now = time.monotonic()
        outstanding = sent - received - written_off
        sending = sent < count and now < deadline
        if sending and rate:
            due = min(count, int((now - start) * rate)) - sent
            for _ in range(due):
                try:
                    sock.send(request(sent))
                except BlockingIOError:
                    break
                sent += 1
            last_progress = now
        elif not sending and rate and outstanding > 0 and now - last_progress <= loss_timeout_s:
            pass
        elif sending and outstanding < window:
            for _ in range(min(window - outstanding, count - sent)):
                try:
                    sock.send(request(sent))
                except BlockingIOError:
                    break
                sent += 1
        elif outstanding <= 0 or now - last_progress > loss_timeout_s:
            if not sending:
                break
            # No answer for a while with the window full: those requests are lost.
            written_off = sent - received
            last_progress = now
            continue
        ready, _, _ = select.select([sock], [], [], 0.001 if rate else 0.05)
        if not ready:
            continue
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            if len(data) >= 20 and data[4:8] == COOKIE and data[16:20] == marker:
                index = struct.unpack_from("!Q", data, 8)[0]
                if index < count and not answered[index]:
                    answered[index] = 1
                    received += 1
                    last_progress = time.monotonic()
                    continue
            stray += 1
    elapsed = time.monotonic() - start
    cpu1 = os.times()
    sock.close()
    answers = sum(answered)
    return {
        "sent": sent,
        "answered": answers,
        "lost": sent - answers,
        "loss_pct": 100.0 * (sent - answers) / sent if sent else 0.0,
        "elapsed_s": elapsed,
        "rps": answers / elapsed if elapsed else 0.0,
        "client_cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
    }


def free_udp_port(host: str) -> int:
    """A UDP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_ready(host: str, port: int, timeout_s: float = 10.0) -> None:
    """Send Binding requests until one is answered."""
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.sendto(request(0), (host, port))
            try:
                s.recvfrom(2048)
                return
            except OSError:
                continue
    raise SystemExit(f"server on {host}:{port} did not answer")


def start_coturn(host: str, port: int, workdir: str) -> subprocess.Popen[bytes]:
    """coturn in STUN-only mode on ``host:port`` (nothing else listening)."""
    exe = shutil.which("turnserver")
    if exe is None:
        raise SystemExit("turnserver not found (apt-get install coturn)")
    args = [exe, "-n", "--stun-only", "--listening-ip", host, "-p", str(port), "--no-cli", "--no-tls",
            "--no-dtls", "--no-tcp", "--log-file", os.path.join(workdir, "coturn.log"), "--no-stdout-log",
            "--pidfile", os.path.join(workdir, "coturn.pid"), "--simple-log"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_ours(host: str, port: int) -> subprocess.Popen[bytes]:
    """Our Binding server (this script with --serve) in a subprocess."""
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", f"{host}:{port}"], env=env)


def serve(spec: str) -> None:
    """Run our STUN Binding server on ``host:port`` until killed."""
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    from twisted.application import service

    from webrtcstack.config import parse_config
    from webrtcstack.turn.adapters.driver import build_turn_services

    host, port = spec.rsplit(":", 1)
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    config = parse_config(f"[turn]\nlisten = {listen}\nrelay_ip = {host}\n[http]\nenabled = no\n", "bench.ini")
    top = service.MultiService()
    for child in build_turn_services(config, reactor, ("bench-secret",)):
        child.setServiceParent(top)
    top.startService()
    reactor.run()  # type: ignore[attr-defined]


def measure(name: str, proc: subprocess.Popen[bytes], host: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    """Load one server and add its CPU time to the result."""
    try:
        wait_ready(host, port)
        cpu0 = process_cpu_s(proc.pid)
        result = run_load(host, port, args.count, args.duration, args.window, args.loss_timeout, args.rate)
        result["server_cpu_s"] = process_cpu_s(proc.pid) - cpu0
        result["name"] = name
        return result
    finally:
        proc.terminate()
        proc.wait(10)


def machine() -> str:
    """nproc and the CPU model."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs, {model}"


def report(results: list[dict[str, Any]]) -> None:
    """Print results side by side."""
    rows = [
        ("requests sent", "sent", "{:d}"),
        ("answered", "answered", "{:d}"),
        ("loss %", "loss_pct", "{:.2f}"),
        ("elapsed s", "elapsed_s", "{:.2f}"),
        ("answers/s", "rps", "{:,.0f}"),
        ("server CPU s", "server_cpu_s", "{:.2f}"),
        ("server CPU us/answer", None, None),
        ("generator CPU s", "client_cpu_s", "{:.2f}"),
    ]
    names = [r["name"] for r in results]
    print(f"{'':24}" + "".join(f"{n:>16}" for n in names))
    for label, key, fmt in rows:
        cells = []
        for r in results:
            if key is None:
                value = 1e6 * r["server_cpu_s"] / r["answered"] if r["answered"] else float("nan")
                cells.append(f"{value:16.1f}")
            else:
                cells.append(f"{fmt.format(r[key]):>16}")
        print(f"{label:24}" + "".join(cells))
    if len(results) == 2 and results[0]["rps"]:
        print(f"ratio {names[1]}/{names[0]} answers/s: {results[1]['rps'] / results[0]['rps']:.2f}")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3478)
    parser.add_argument("--count", type=int, default=200_000, help="most requests to send")
    parser.add_argument("--duration", type=float, default=10.0, help="most seconds to send for")
    parser.add_argument("--window", type=int, default=64, help="most requests outstanding")
    parser.add_argument("--loss-timeout", type=float, default=0.5)
    parser.add_argument("--rate", type=float, default=0.0, help="fixed requests/s (0: window-paced)")
    parser.add_argument("--compare", action="store_true", help="start coturn and ours, load each")
    parser.add_argument("--serve", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    check_loopback(args.host)
    pace = f"rate {args.rate:.0f}/s" if args.rate else f"window {args.window}"
    print(f"machine: {machine()}; count {args.count}, duration {args.duration}s, {pace}")
    if not args.compare:
        result = run_load(args.host, args.port, args.count, args.duration, args.window, args.loss_timeout,
                          args.rate)
        result["name"] = f"{args.host}:{args.port}"
        result["server_cpu_s"] = float("nan")
        report([result])
        return
    with tempfile.TemporaryDirectory() as workdir:
        results = []
        port = free_udp_port(args.host)
        results.append(measure("coturn", start_coturn(args.host, port, workdir), args.host, port, args))
        port = free_udp_port(args.host)
        results.append(measure("webrtcstack", start_ours(args.host, port), args.host, port, args))
    report(results)


if __name__ == "__main__":
    main()
