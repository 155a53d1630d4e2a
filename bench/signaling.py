"""Signaling benchmark: N WebSocket clients paired in rooms, exchanging messages.

Starts the web side (``build_web``: room server + /ws on one port) in a child
process on 127.0.0.1, then from this process:

1. joins N/2 rooms twice over HTTP (the room server issues every client id),
2. opens N WebSockets and registers each (the hub's hijack check applies),
3. measures the server's RSS with all sockets idle (RSS per 1,000 connections),
4. sends ``--rate`` messages a second for ``--duration`` seconds, each from a
   random client to its room peer, and times send-to-receive (the clock is
   this process's, so the figure includes our own client's work too).

Prints connections held, messages/s delivered, forwarding latency p50/p99,
and RSS per 1,000 idle connections.  ``--in-flight K`` runs flat out instead
of at ``--rate``.  ``WEBRTCSTACK_BENCH_PROFILE=FILE`` runs the server under
cProfile and writes its stats to FILE when it stops.  Needs no network beyond loopback::

    PYTHONPATH=src python bench/signaling.py --clients 5000 --rate 1000 --duration 20

``--collider PATH`` measures a collider binary (apprtc's ``collidermain``, built by
you; this script builds nothing) instead of our server, with the same load: it is
started as ``PATH -tls=false -port=P -room-server=http://127.0.0.1:9`` on a free
port, there is no ``/join`` (client ids are made here, as collider accepts any),
and every WebSocket carries an ``Origin`` header (collider refuses one without).
``--compare --collider PATH`` runs ours, then collider, in one invocation and
prints both columns and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor, task
from twisted.web.client import Agent, HTTPConnectionPool, readBody

REPO = Path(__file__).resolve().parents[1]

SERVER = r"""
import resource, sys
from twisted.internet import reactor
from webrtcstack.config import parse_config
from webrtcstack.web import build_web
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
config = parse_config(sys.argv[1])
app = build_web(config, reactor, ("bench-secret-123",))
port = reactor.listenTCP(0, app.site, interface="127.0.0.1", backlog=4096)
print(port.getHost().port, flush=True)
import os
if os.environ.get("WEBRTCSTACK_BENCH_PROFILE"):  # cProfile the server; the stats are written at shutdown
    import cProfile
    profile = cProfile.Profile()
    reactor.addSystemEventTrigger("before", "shutdown", lambda: profile.dump_stats(os.environ["WEBRTCSTACK_BENCH_PROFILE"]))
    profile.enable()
reactor.run()
"""


def server_config(clients: int, rate: int) -> str:
    """Limits wide enough for the benchmark; everything else default."""
    return f"""
[http]
max_connections = {clients + 100}
max_connections_per_ip = {clients + 100}
writes_per_second_per_ip = 1000000
[rooms]
max_rooms = {clients}
[signaling]
max_connections = {clients + 100}
max_connections_per_ip = {clients + 100}
messages_per_second = {max(50, int(rate))}
register_timeout_seconds = 3600
ping_interval_seconds = 0
[turn]
listen = 127.0.0.1:3478
"""


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    return sum(cpu_split(pid))


class BenchClientProtocol(WebSocketClientProtocol):
    bench: Bench
    index: int

    def onOpen(self) -> None:
        self.bench.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.bench.received(payload, self)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        self.bench.closed(self)


class Bench:
    def __init__(self, ports: list[int], clients: int) -> None:
        #: one port per node: client i joins and connects through node i % len(ports), so with two
        #: nodes the two clients of every room sit on different nodes
        self.ports = ports
        self.clients = clients
        self.protos: list[BenchClientProtocol | None] = [None] * clients
        self.ids: list[tuple[str, str]] = []
        self.latencies: list[float] = []
        self.received_count = 0
        self.open_count = 0
        self.lost = 0
        self._waiting: dict[int, defer.Deferred] = {}
        #: the port each client connects through (default: client i through node i % nodes)
        self.port_of: list[int] | None = None
        #: ``--in-flight``: every message received is answered with a new one while this is set
        self.echo = False
        self.sent_count = 0
        #: connecting to collider: its WebSocket library refuses an upgrade without ``Origin``
        self.origin: str | None = None

    def opened(self, proto: BenchClientProtocol) -> None:
        self.protos[proto.index] = proto
        self.open_count += 1
        room, client = self.ids[proto.index]
        proto.sendMessage(json.dumps({"cmd": "register", "roomid": room, "clientid": client}).encode())
        d = self._waiting.pop(proto.index, None)
        if d is not None:
            d.callback(proto)

    def closed(self, proto: BenchClientProtocol) -> None:
        if self.protos[proto.index] is proto:
            self.protos[proto.index] = None
            self.open_count -= 1
            self.lost += 1
        d = self._waiting.pop(proto.index, None)
        if d is not None:
            d.errback(ConnectionError("closed before open"))

    def received(self, payload: bytes, proto: BenchClientProtocol | None = None) -> None:
        envelope = json.loads(payload)
        if envelope["error"]:
            print("error:", envelope["error"], file=sys.stderr)
            return
        sent = json.loads(envelope["msg"])["t"]
        self.latencies.append(time.perf_counter() - sent)
        self.received_count += 1
        if self.echo and proto is not None:
            self.send_from(proto)

    @staticmethod
    def message() -> bytes:
        """One ``send`` command carrying a candidate-sized message stamped with the time."""
        msg = json.dumps({"type": "candidate", "label": 0, "id": "0",
                          "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
                          "t": time.perf_counter()})
        return json.dumps({"cmd": "send", "msg": msg}).encode()

    def send_from(self, proto: BenchClientProtocol) -> None:
        proto.sendMessage(self.message())
        self.sent_count += 1

    async def flat_out(self, in_flight: int, duration: float) -> tuple[int, float, int]:
        """Every client keeps ``in_flight`` messages on the way to its peer for ``duration`` s (each one
        received is answered with a new one); returns (sent, seconds, received within the window).
        What is still on the way 2 s after the senders stop is the backlog left behind."""
        self.echo = True
        started = time.perf_counter()
        for proto in self.protos:
            if proto is not None:
                for _ in range(in_flight):
                    self.send_from(proto)
        await task.deferLater(reactor, duration, lambda: None)
        self.echo = False
        elapsed = time.perf_counter() - started
        in_window = self.received_count
        await task.deferLater(reactor, 2.0, lambda: None)
        return self.sent_count, elapsed, in_window

    def make_ids(self) -> None:
        """Client ids without ``/join`` (collider has no room server; it takes any id)."""
        self.ids = [(f"bench{i // 2}", f"c{i}") for i in range(self.clients)]

    async def join_all(self) -> None:
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 64
        agent = Agent(reactor, pool=pool)
        async def join(room: str, which: int) -> str:
            base = f"http://127.0.0.1:{self.ports[which % len(self.ports)]}"
            response = await agent.request(b"POST", f"{base}/join/{room}".encode())
            body = json.loads(await readBody(response))
            assert body["result"] == "SUCCESS", body
            return str(body["params"]["client_id"])

        rooms = [f"bench{i}" for i in range(self.clients // 2)]
        ids: list[tuple[str, str]] = []
        for start in range(0, len(rooms), 64):
            batch = rooms[start:start + 64]
            firsts = await defer.gatherResults([defer.ensureDeferred(join(r, 0)) for r in batch])
            seconds = await defer.gatherResults([defer.ensureDeferred(join(r, 1)) for r in batch])
            for room, a, b in zip(batch, firsts, seconds):
                ids += [(room, a), (room, b)]
        self.ids = ids
        await pool.closeCachedConnections()

    def connect_one(self, index: int) -> defer.Deferred:
        port = self.port_of[index] if self.port_of is not None else self.ports[index % len(self.ports)]
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws", origin=self.origin)
        factory.setProtocolOptions(openHandshakeTimeout=60)

        def build(addr: Any) -> BenchClientProtocol:
            proto = BenchClientProtocol()
            proto.factory = factory
            proto.bench = self
            proto.index = index
            return proto

        factory.buildProtocol = build  # type: ignore[method-assign]
        d: defer.Deferred = defer.Deferred()
        self._waiting[index] = d
        reactor.connectTCP("127.0.0.1", port, factory, timeout=60)
        return d

    async def connect_all(self, concurrency: int = 200) -> None:
        for start in range(0, len(self.ids), concurrency):
            batch = range(start, min(start + concurrency, len(self.ids)))
            await defer.gatherResults([self.connect_one(i) for i in batch], consumeErrors=True)

    async def load(self, rate: int, duration: float) -> tuple[int, float]:
        """Send ``rate`` messages a second for ``duration``; return (sent, seconds)."""
        tick = 0.01
        per_tick = rate * tick
        carry = 0.0
        sent = 0
        rng = random.Random(1)
        n = len(self.ids)
        started = time.perf_counter()

        def send_some() -> None:
            nonlocal carry, sent
            carry += per_tick
            while carry >= 1.0:
                carry -= 1.0
                proto = self.protos[rng.randrange(n)]
                if proto is None:
                    continue
                proto.sendMessage(self.message())
                sent += 1

        loop = task.LoopingCall(send_some)
        done = loop.start(tick)  # fires when the loop stops
        await task.deferLater(reactor, duration, lambda: None)
        loop.stop()
        await done
        elapsed = time.perf_counter() - started
        await task.deferLater(reactor, 0.5, lambda: None)  # let the last ones arrive
        return sent, elapsed


async def worker(args: argparse.Namespace) -> None:
    """``--worker FILE``: one load generator process of several (``--generators``).

    Connects and registers the clients listed in FILE, says ``ready``, waits
    for ``go`` on stdin, sends ``--rate`` messages a second among them for
    ``--duration``, and prints one JSON line: sent, received, latencies (s).
    Rooms are never split between generators, so each latency is timed by
    one process's clock.
    """
    from twisted.internet.threads import deferToThread

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open(args.worker) as f:
        job = json.load(f)
    bench = Bench(job["ports"], len(job["ids"]))
    bench.ids = [tuple(pair) for pair in job["ids"]]  # type: ignore[misc]
    bench.port_of = job["port_of"]
    bench.origin = job.get("origin")
    await bench.connect_all()
    await task.deferLater(reactor, 1.0, lambda: None)  # registrations settle
    print(json.dumps({"ready": bench.open_count}), flush=True)
    await deferToThread(sys.stdin.readline)
    in_window = -1
    if args.in_flight:
        sent, elapsed, in_window = await bench.flat_out(args.in_flight, args.duration)
    else:
        sent, elapsed = await bench.load(args.rate, args.duration)
    print(json.dumps({"sent": sent, "received": bench.received_count, "elapsed": elapsed, "lost": bench.lost,
                      "latencies": bench.latencies, "in_window": in_window}), flush=True)
    await deferToThread(sys.stdin.readline)  # the sockets stay open until the figures are taken


class Generators:
    """``--generators N`` load generator processes, each with whole rooms (see :func:`worker`)."""

    def __init__(self, bench: "Bench", count: int, rate: int, duration: float, tmp: str, in_flight: int = 0) -> None:
        self.procs = []
        env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        pairs = [bench.ids[i:i + 2] for i in range(0, len(bench.ids), 2)]
        for g in range(count):
            mine = [pair for r, pair in enumerate(pairs) if r % count == g]
            ids = [client for pair in mine for client in pair]
            # each client keeps the node it joined through (client i of the whole run: i % nodes)
            port_of = [bench.ports[(2 * (g + count * (k // 2)) + k % 2) % len(bench.ports)] for k in range(len(ids))]
            path = os.path.join(tmp, f"generator{g}.json")
            with open(path, "w") as f:
                json.dump({"ports": bench.ports, "ids": ids, "port_of": port_of, "origin": bench.origin}, f)
            self.procs.append(subprocess.Popen(
                [sys.executable, __file__, "--worker", path, "--rate", str(rate / count), "--duration", str(duration),
                 "--in-flight", str(in_flight)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env))

    def wait_ready(self) -> int:
        return sum(json.loads(p.stdout.readline())["ready"] for p in self.procs)  # type: ignore[union-attr]

    def go_and_collect(self) -> list[dict[str, Any]]:
        for p in self.procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        return [json.loads(p.stdout.readline()) for p in self.procs]  # type: ignore[union-attr]

    def finish(self) -> None:
        """Let the generators close their sockets and exit (after the figures are taken)."""
        for p in self.procs:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(30)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def node_config(clients: int, rate: int, port: int, redis_port: int, node: int, metrics_port: int) -> str:
    """A cluster node's config: the benchmark's limits, TURN off, [redis] on."""
    text = server_config(clients, rate)
    text = text.replace("[http]\n", f"[http]\nlisten = 127.0.0.1:{port}\n", 1)
    text = text.replace("[turn]\nlisten = 127.0.0.1:3478", "[turn]\nenabled = no")
    return text + (f"[redis]\nurl = redis://127.0.0.1:{redis_port}/0\nnode_id = bench-{node}\n"
                   f"[metrics]\nlisten = 127.0.0.1:{metrics_port}\n[stack]\ndrain_seconds = 0\n")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def round_trips(metrics_ports: list[int]) -> int:
    """Redis commands the nodes sent on their command connections (from their /metrics): one round trip each."""
    import urllib.request

    total = 0.0
    for port in metrics_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('webrtcstack_redis_commands_total{connection="commands"}'):
                    total += float(line.split()[-1])
    return int(total)


def redis_port_of(proc: Any) -> int:
    """The ``--port`` a redis-server was started with."""
    return int(proc.args[proc.args.index("--port") + 1])


def commandstats(redis_port: int) -> dict[str, int]:
    """Calls per command from Redis's ``INFO commandstats`` (scripts show as ``evalsha``)."""
    import socket

    from webrtcstack.cluster.resp import RespParser, encode

    with socket.create_connection(("127.0.0.1", redis_port), timeout=10) as sock:
        sock.sendall(encode("INFO", "commandstats"))
        parser = RespParser()
        replies: list[Any] = []
        while not replies:
            replies = parser.feed(sock.recv(1 << 20))
    out = {}
    for line in replies[0].decode().splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            out[name] = int(rest.split(",")[0].split("=")[1])
    return out


async def start_collider(path: str) -> tuple[list[Any], list[int], list[int]]:
    """A collider binary on a free 127.0.0.1 port (it listens on all interfaces; the bench only uses loopback)."""
    import socket

    port = free_port()
    proc = subprocess.Popen([path, "-tls=false", f"-port={port}", "-room-server=http://127.0.0.1:9"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return [proc], [port], []
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"{path} exited with status {proc.returncode} before listening")
            await task.deferLater(reactor, 0.05, lambda: None)
    proc.kill()
    raise SystemExit(f"{path} did not listen on port {port} within 10 s")


async def start_servers(args: argparse.Namespace, clients: int, tmp: str) -> tuple[list[Any], list[int], list[int]]:
    """The servers to measure: one in-memory process, or ``--nodes`` twistd processes on a redis-server."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.nodes == 0:
        server = subprocess.Popen([sys.executable, "-c", SERVER, server_config(clients, args.rate)],
                                  stdout=subprocess.PIPE, env=env)
        assert server.stdout is not None
        return [server], [int(server.stdout.readline())], []
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
    procs: list[Any] = [redis]
    ports = []
    metrics_ports = []
    for node in range(args.nodes):
        port, metrics_port = free_port(), free_port()
        path = os.path.join(tmp, f"node{node}.ini")
        with open(path, "w") as f:
            f.write(node_config(clients, args.rate, port, redis_port, node, metrics_port))
        metrics_ports.append(metrics_port)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "--logfile", os.path.join(tmp, f"node{node}.log"), "webrtcstack", "-c", path],
            env=env, cwd=tmp))
        ports.append(port)
    for node in range(args.nodes):  # wait for each node's lease
        log = os.path.join(tmp, f"node{node}.log")
        for _ in range(300):
            if os.path.exists(log) and "holds its lease" in open(log).read():
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        else:
            raise SystemExit(f"node {node} did not start: see {log}")
    return procs, ports, metrics_ports


async def measure(args: argparse.Namespace, collider: str | None = None) -> dict[str, Any]:
    """One run against our server(s), or against the collider binary at ``collider``; returns the figures."""
    import tempfile

    clients = args.clients - args.clients % 2
    tmp = tempfile.mkdtemp(prefix="bench-signaling-")
    if collider:
        procs, ports, metrics_ports = await start_collider(collider)
    else:
        procs, ports, metrics_ports = await start_servers(args, clients, tmp)
    cluster = bool(metrics_ports)
    servers = procs[1:] if cluster else procs
    out: dict[str, Any] = {"clients": clients, "cluster": cluster}
    try:
        await task.deferLater(reactor, 0.5, lambda: None)
        rss_start = sum(rss_kib(p.pid) for p in servers)
        bench = Bench(ports, clients)
        calls0 = round_trips(metrics_ports) if cluster else 0
        cpu_join0 = sum(cpu_s(p.pid) for p in servers)
        t0 = time.perf_counter()
        if collider:
            bench.origin = "http://127.0.0.1"
            bench.make_ids()
        else:
            await bench.join_all()
        t1 = time.perf_counter()
        cpu_join = sum(cpu_s(p.pid) for p in servers) - cpu_join0
        calls1 = round_trips(metrics_ports) if cluster else 0
        print(f"joined {clients} clients", file=sys.stderr)
        generators = None
        if args.generators > 1:
            from twisted.internet.threads import deferToThread

            generators = Generators(bench, args.generators, args.rate, args.duration, tmp, args.in_flight)
            bench.open_count = await deferToThread(generators.wait_ready)
        else:
            await bench.connect_all()
        t2 = time.perf_counter()
        cpu_connect = sum(cpu_s(p.pid) for p in servers) - cpu_join0 - cpu_join
        print(f"connected {bench.open_count} sockets", file=sys.stderr)
        await task.deferLater(reactor, 2.0, lambda: None)  # registrations settle
        rss_idle = sum(rss_kib(p.pid) for p in servers)
        cpu_before = sum(cpu_s(p.pid) for p in servers)
        user_before = sum(cpu_split(p.pid)[0] for p in servers)
        calls2 = round_trips(metrics_ports) if cluster else 0
        stats2 = commandstats(redis_port_of(procs[0])) if cluster else {}
        if generators is not None:
            results = await deferToThread(generators.go_and_collect)
            sent = sum(r["sent"] for r in results)
            elapsed = max(r["elapsed"] for r in results)
            bench.received_count = sum(r["received"] for r in results)
            bench.lost = sum(r["lost"] for r in results)
            bench.latencies = [x for r in results for x in r["latencies"]]
            in_window = sum(r["in_window"] for r in results)
        elif args.in_flight:
            sent, elapsed, in_window = await bench.flat_out(args.in_flight, args.duration)
        else:
            sent, elapsed = await bench.load(args.rate, args.duration)
            in_window = -1
        cpu_used = sum(cpu_s(p.pid) for p in servers) - cpu_before
        user_used = sum(cpu_split(p.pid)[0] for p in servers) - user_before
        out.update(
            mode="collider" if collider else (f"{args.nodes} node(s) on one redis-server" if cluster
                                              else "one process, in memory"),
            join_s=t1 - t0, cpu_join=cpu_join, connect_s=t2 - t1, cpu_connect=cpu_connect, held=bench.open_count, lost=bench.lost,
            rss_start=rss_start, rss_idle=rss_idle, sent=sent, received=bench.received_count, elapsed=elapsed,
            in_window=in_window, latencies=bench.latencies, cpu_used=cpu_used, user_used=user_used)
        if cluster:
            out.update(join_calls=calls1 - calls0, load_calls=round_trips(metrics_ports) - calls2,
                       redis_cpu=cpu_s(procs[0].pid),
                       commands={k: v - stats2.get(k, 0)
                                 for k, v in commandstats(redis_port_of(procs[0])).items() if v != stats2.get(k, 0)})
        if generators is not None:
            await deferToThread(generators.finish)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    return out


def figures(r: dict[str, Any], in_flight: int) -> dict[str, float]:
    """The comparable figures of one run (see :func:`measure`)."""
    n = r["clients"]
    delivered = max(1, r["received"])
    lat = r["latencies"]
    rate = r["in_window"] / r["elapsed"] if in_flight else r["received"] / r["elapsed"]
    return {
        "connections/s (join + WebSocket + register)": n / (r["join_s"] + r["connect_s"]),
        "RSS per idle connection (KiB)": (r["rss_idle"] - r["rss_start"]) / n,
        ("flat-out msg/s delivered" if in_flight else "msg/s delivered"): rate,
        "undelivered 2 s after the senders stopped": r["sent"] - r["received"] if in_flight else float("nan"),
        "server CPU per message (µs)": r["cpu_used"] / delivered * 1e6,
        "p50 (ms)": percentile(lat, 50) * 1000,
        "p95 (ms)": percentile(lat, 95) * 1000,
        "p99 (ms)": percentile(lat, 99) * 1000,
    }


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    clients = r["clients"]
    lat = r["latencies"]
    elapsed = r["elapsed"]
    join_s, connect_s, cpu_used, user_used = r["join_s"], r["connect_s"], r["cpu_used"], r["user_used"]
    print(f"servers                      {r['mode']}; load from {max(1, args.generators)} generator process(es)")
    print(f"clients requested            {clients}")
    print(f"connections held             {r['held']} (lost {r['lost']})")
    if r["mode"] != "collider":
        print(f"joins over HTTP              {clients} in {join_s:.1f} s ({clients / join_s:.0f}/s,"
              f" {r['cpu_join'] / clients * 1e6:.0f} µs server CPU per join, all nodes)")
    print(f"WebSocket connect+register   {clients} in {connect_s:.1f} s ({clients / connect_s:.0f}/s,"
          f" {r['cpu_connect'] / clients * 1e6:.0f} µs server CPU per connection)")
    print(f"connections/s, all included  {clients / (join_s + connect_s):.0f}")
    print(f"server RSS                   {r['rss_start'] / 1024:.1f} MiB at start, {r['rss_idle'] / 1024:.1f} MiB with all idle")
    print(f"RSS per 1,000 idle conns     {(r['rss_idle'] - r['rss_start']) / 1024 / clients * 1000:.1f} MiB")
    print(f"messages sent / delivered    {r['sent']} / {r['received']} in {elapsed:.1f} s")
    if args.in_flight:
        print(f"flat out ({args.in_flight} in flight/client) {r['in_window'] / elapsed:.0f} msg/s delivered;"
              f" {r['sent'] - r['received']} still undelivered 2 s after the senders stopped")
    else:
        print(f"messages/s delivered         {r['received'] / elapsed:.0f} (target rate {args.rate})")
    print(f"forwarding latency           p50 {percentile(lat, 50) * 1000:.2f} ms, p99 {percentile(lat, 99) * 1000:.2f} ms,"
          f" max {max(lat) * 1000 if lat else float('nan'):.2f} ms")
    print(f"server CPU during load       {cpu_used:.2f} s ({cpu_used / elapsed * 100:.0f} % of one core,"
          f" {cpu_used / max(1, r['received']) * 1e6:.0f} µs per message, all nodes;"
          f" user {user_used / max(1, r['received']) * 1e6:.0f} µs,"
          f" system {(cpu_used - user_used) / max(1, r['received']) * 1e6:.0f} µs)")
    if r["cluster"]:
        print(f"redis round trips per join   {r['join_calls'] / clients:.2f} (lease renewals included)")
        print(f"redis round trips per message {r['load_calls'] / max(1, r['received']):.2f}"
              " (sender's node; the receiver's blocking inbox reads not counted)")
        print(f"redis-server CPU (whole run) {r['redis_cpu']:.2f} s")
        print("redis commands during load   " + ", ".join(f"{k} {v}" for k, v in sorted(r["commands"].items())))


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.compare and not args.collider:
        raise SystemExit("--compare needs --collider PATH (a collider binary you built; this script builds nothing)")
    if args.compare:
        ours = await measure(args)
        report(ours, args)
        print()
        theirs = await measure(args, args.collider)
        report(theirs, args)
        print()
        a, b = figures(ours, args.in_flight), figures(theirs, args.in_flight)
        print(f"{'figure':46} {'collider':>10} {'webrtcstack':>12} {'ratio':>7}")
        for key in a:
            ratio = a[key] / b[key] if b[key] else float("nan")
            print(f"{key:46} {b[key]:10.2f} {a[key]:12.2f} {ratio:6.2f}×")
    else:
        report(await measure(args, args.collider), args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=5000, help="WebSocket clients (two per room)")
    parser.add_argument("--rate", type=float, default=1000, help="messages per second during the load phase")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--nodes", type=int, default=0,
                        help="0: one in-memory process (default); N: N twistd nodes sharing a redis-server it starts")
    parser.add_argument("--generators", type=int, default=1,
                        help="load generator processes (whole rooms each); more than one keeps the generator from "
                             "being the bottleneck at 5,000 msg/s")
    parser.add_argument("--in-flight", type=int, default=0,
                        help="flat out instead of --rate: each client keeps this many messages on the way to its peer")
    parser.add_argument("--collider", metavar="PATH",
                        help="measure this collider binary (apprtc's collidermain) instead of our server")
    parser.add_argument("--compare", action="store_true",
                        help="with --collider: run ours, then collider, and print both side by side")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    def run() -> defer.Deferred:
        d = defer.ensureDeferred(worker(arguments) if arguments.worker else main(arguments))
        d.addErrback(lambda f: (f.printTraceback(), None))
        d.addBoth(lambda _: reactor.stop())
        return d

    reactor.callWhenRunning(run)
    reactor.run()
