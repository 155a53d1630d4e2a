#!/usr/bin/env python3
"""What one UDP datagram in and one out costs CPython here, beside C: the floor under a Python relay.

A TURN relay's per-packet work is one receive and one send.  This script
measures that work alone, with no TURN logic and no Twisted, in the same
harness as ``bench/turn_relay.py``: coturn's ``turnserver`` relays
``turnutils_uclient``'s ChannelData (UDP channels, ``-m 20 -z 1``, about
40,000 relayed packets/s) to an echo peer, and the echo peer is, in turn,

* ``turnutils_peer`` (coturn's C echo: ``recvfrom`` + ``sendto`` per datagram), and
* the smallest Python echo we could write: ``select.epoll``, then ``recvfrom``
  and ``sendto`` in a loop until ``EAGAIN``, on CPython (:data:`PY_ECHO`).

Each echoed datagram is one receive and one send, exactly a relayed
packet's system calls.  The peer's CPU per echoed datagram (``/proc/PID/stat``)
is printed for both, with coturn's own CPU per relayed packet from the same
runs, and ours (``--ours``: the same load through our server, C echo peer).

If the Python echo alone costs more per datagram than coturn's whole relay,
no Python relay that makes those two calls per packet can match coturn's CPU
per packet (docs/performance.md, issue 15).

Usage::

    python bench/udp_floor.py [--rounds N] [--ours]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import turn_relay as relay  # noqa: E402  (the harness: ports, servers, uclient, /proc CPU)

#: The Python echo peer: every port of turnutils_peer's pair (uclient sends to ``-r`` and ``-r`` + 1).
PY_ECHO = r'''
import select, socket, sys
port = int(sys.argv[1])
poller = select.epoll()
socks = {}
for p in (port, port + 1):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", p))
    s.setblocking(False)
    poller.register(s.fileno(), select.EPOLLIN)
    socks[s.fileno()] = s
while True:
    for fd, _ in poller.poll():
        s = socks[fd]
        recvfrom, sendto = s.recvfrom, s.sendto
        for _ in range(64):
            try:
                data, addr = recvfrom(65535)
            except BlockingIOError:
                break
            sendto(data, addr)
'''


def free_pair() -> int:
    """A port whose next port is free too (the echo binds both)."""
    import socket

    for _ in range(100):
        port = relay.free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def one_run(server: str, peer_kind: str, tmp: str, messages: int) -> dict[str, float]:
    port, peer_port = relay.free_port(), free_pair()
    if peer_kind == "C":
        peer = subprocess.Popen(["turnutils_peer", "-L", "127.0.0.1", "-p", str(peer_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        peer = subprocess.Popen([sys.executable, "-c", PY_ECHO, str(peer_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = relay.start_coturn(port, tmp) if server == "coturn" else relay.start_ours(port, tmp)
    try:
        relay.wait_for_binding(port, proc)
        time.sleep(0.3)
        peer0 = relay.cpu_seconds(peer.pid)
        r = relay.run_uclient(port, peer_port, [], 20, 1, messages, proc.pid)
        peer1 = relay.cpu_seconds(peer.pid)
    finally:
        for p in (proc, peer):
            p.terminate()
            p.wait(10)
    echoed = r["relayed"] / 2  # each echoed datagram is two relayed legs
    return {"server_us": r["us_per_pkt"], "peer_us": (peer1 - peer0) / echoed * 1e6 if echoed else float("nan"),
            "lost_pct": r["lost_pct"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--messages", type=int, default=1000, help="messages per uclient session (default 1000)")
    parser.add_argument("--ours", action="store_true", help="also relay through our server (C echo peer)")
    args = parser.parse_args()
    for tool in ("turnserver", "turnutils_uclient", "turnutils_peer"):
        if not relay.shutil.which(tool):
            print(f"{tool} not found (Debian package coturn)", file=sys.stderr)
            return 1
    print(f"machine: {relay.platform_line()}")
    runs = [("coturn", "C"), ("coturn", "Python")] + ([("ours", "C")] if args.ours else [])
    results: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for server, peer_kind in runs:
                r = one_run(server, peer_kind, tmp, args.messages)
                results[(server, peer_kind)].append(r)
                print(f"  server {server:6} echo {peer_kind:6}: server {r['server_us']:5.1f} µs/relayed packet, "
                      f"echo {r['peer_us']:5.1f} µs/echoed datagram, loss {r['lost_pct']:.3f} %", flush=True)
    print("\n| | µs per datagram (each round) |\n|---|---|")

    def cells(key: tuple[str, str], field: str) -> str:
        return ", ".join(f"{r[field]:.1f}" for r in results[key])

    print(f"| C echo (turnutils_peer): one recvfrom + one sendto | {cells(('coturn', 'C'), 'peer_us')} |")
    print(f"| Python echo (epoll, recvfrom + sendto): the floor | {cells(('coturn', 'Python'), 'peer_us')} |")
    print(f"| coturn's whole relay, per relayed packet | {cells(('coturn', 'C'), 'server_us')} |")
    if args.ours:
        print(f"| our whole relay, per relayed packet | {cells(('ours', 'C'), 'server_us')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
