"""What every test module shares: free ports, prerequisites, and waits on events.

Prerequisites: a test that needs a tool from outside Python (coturn's
``turnutils_*``, Chromium, ``redis-server``, ``unshare``, ``::1``,
``systemd-analyze``, …) asks :func:`require`.  Under CI (``CI`` set to
``true``/``1``/``yes``) a missing one is a **failure**, so a green CI run
cannot hide an absent peer; elsewhere the test is skipped with the reason.

Waits: nothing here sleeps.  A socket is waited on until the reactor says it
is readable (:func:`readable`), a subprocess until it prints a line
(:class:`Lines`), each with one overall deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable

from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.trial.unittest import SkipTest


# -- prerequisites ------------------------------------------------------------

def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``, as CI sets it; ``1``/``yes`` too)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(missing: str | None) -> None:
    """Go on when ``missing`` is None; otherwise fail under CI, skip elsewhere.

    :param missing: why the test cannot run here (None: it can).
    """
    if missing is None:
        return
    if in_ci():
        raise AssertionError(f"required in CI, but {missing}")
    raise SkipTest(missing)


def need_tool(name: str, package: str = "coturn") -> str:
    """The path of the program ``name`` (from Debian's ``package``); see :func:`require`."""
    path = shutil.which(name)
    require(None if path else f"{name} is not installed (apt-get install {package})")
    assert path is not None
    return path


def ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def need_ipv6() -> None:
    """Go on only where ``::1`` exists; see :func:`require`."""
    require(None if ipv6_loopback() else "there is no IPv6 loopback (::1)")


def unshare_missing() -> str | None:
    """Why a network namespace with only ``lo`` cannot be made here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is not installed (apt-get install util-linux iproute2)"
    try:
        done = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare -n does not work here: {e}"
    if done.returncode != 0:
        return f"unshare -n does not work here: {done.stderr.decode(errors='replace').strip()}"
    return None


# -- ports ----------------------------------------------------------------------

#: Where :func:`free_port` looks: below Linux's ephemeral range (32768-60999 by default), which the
#: kernel hands to every outgoing socket of every process (the other trial worker's clients, uclient,
#: a stack's own connections), and below the relay ranges the tests configure (40000 and up). A port
#: taken from the ephemeral range could be taken again by any of those between the check and the
#: stack's bind ("Address already in use", seen in full runs); in this range only another free_port
#: call can, and each one starts at a random place.
FREE_PORT_RANGE = (12000, 31999)
#: ports free_port has returned in this process: never returned twice (two calls in a row, say a
#: server's port and its TLS port, could otherwise get the same one before either is bound)
_HANDED_OUT: set[int] = set()


def free_port(kind: int | None = None, host: str = "127.0.0.1") -> int:
    """A free port on ``host`` (from :data:`FREE_PORT_RANGE`).

    :param kind: ``socket.SOCK_DGRAM`` or ``socket.SOCK_STREAM`` for a port
        free for that transport; None (the default) for one free for both UDP
        and TCP (a TURN listener binds both).
    """
    import random

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kinds = (kind,) if kind is not None else (socket.SOCK_DGRAM, socket.SOCK_STREAM)
    low, high = FREE_PORT_RANGE
    start = random.randrange(low, high + 1)
    for offset in range(high - low + 1):
        port = low + (start - low + offset) % (high - low + 1)
        if port in _HANDED_OUT:  # given to an earlier caller, who may not have bound it yet
            continue
        socks = []
        try:
            for k in kinds:
                sock = socket.socket(family, k)
                socks.append(sock)
                sock.bind((host, port))
            _HANDED_OUT.add(port)
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no port free for {'both UDP and TCP' if kind is None else 'that transport'} on {host}")


# -- waits on events (in the reactor) -----------------------------------------------

class _ReadWatch:
    """An ``IReadDescriptor`` that fires a Deferred once its socket is readable."""

    def __init__(self, sock: socket.socket, reactor: Any) -> None:
        self.sock = sock
        self.reactor = reactor
        self.done: defer.Deferred[None] = defer.Deferred(lambda _: self.stop())

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "ReadWatch"

    def stop(self) -> None:
        self.reactor.removeReader(self)

    def doRead(self) -> None:
        self.stop()
        if not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason: Any) -> None:
        self.doRead()


def readable(sock: socket.socket, timeout: float, reactor: Any = _reactor) -> defer.Deferred[None]:
    """A Deferred that fires when ``sock`` has something to read (or is closed); fails after ``timeout`` s."""
    watch = _ReadWatch(sock, reactor)
    reactor.addReader(watch)
    return watch.done.addTimeout(timeout, reactor)


@defer.inlineCallbacks
def recv_within(sock: socket.socket, timeout: float = 5.0, size: int = 65535, reactor: Any = _reactor) -> Any:
    """``sock.recvfrom`` once a datagram (or stream data) is there, waiting at most ``timeout`` s.

    The socket must be non-blocking.  Returns ``(data, address)``.
    """
    deadline = reactor.seconds() + timeout
    while True:
        try:
            return sock.recvfrom(size)
        except BlockingIOError:
            left = deadline - reactor.seconds()
            if left <= 0:
                raise defer.TimeoutError(f"nothing to read within {timeout} s") from None
            yield readable(sock, left, reactor)


def fired_within(d: defer.Deferred[Any], timeout: float, reactor: Any = _reactor) -> defer.Deferred[Any]:
    """``d`` with one deadline: it fails with ``TimeoutError`` after ``timeout`` s."""
    return d.addTimeout(timeout, reactor)


class Event:
    """A condition that tests wait on: :meth:`wait` fires when :meth:`check` first finds it true.

    The thing under test calls :meth:`check` from the place where the
    condition changes (a wrapped method, a protocol's ``connectionLost``), so
    the wait is woken by the event itself, never by a timer.
    """

    def __init__(self, condition: Callable[[], bool]) -> None:
        self.condition = condition
        self._waiting: list[defer.Deferred[None]] = []

    def check(self) -> None:
        """Fire the waiters if the condition now holds."""
        if self._waiting and self.condition():
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def wait(self, timeout: float, reactor: Any = _reactor) -> defer.Deferred[None]:
        """Fires when the condition holds (at once if it already does); fails after ``timeout`` s."""
        if self.condition():
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d.addTimeout(timeout, reactor)


def after_each_call(obj: Any, name: str, event: Event) -> Callable[[], None]:
    """Wrap ``obj.name`` so that :meth:`Event.check` runs after every call; returns the undo."""
    original = getattr(obj, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            event.check()

    setattr(obj, name, wrapped)
    return lambda: setattr(obj, name, original)


# -- subprocesses: their output, and the stack itself ---------------------------

#: ``twistd`` run by the interpreter running the tests
TWISTD = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


class Lines:
    """A subprocess's output read line by line, as it comes (never sleeping).

    A daemon thread reads the pipe to its end, so the child never blocks on a
    full pipe however long the test runs; :meth:`wait` blocks on a condition
    the thread signals, and :meth:`when` is the same wait for a test running
    in the reactor.

    :param stream: the pipe (``Popen(..., stdout=PIPE).stdout``).
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        #: every line read so far (for failure messages)
        self.seen: list[str] = []
        self._next = 0
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="lines", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                with self._changed:
                    self.seen.append(raw.decode(errors="replace").rstrip("\n"))
                    self._changed.notify_all()
        except (OSError, ValueError):  # the test closed the pipe
            pass
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def text(self, last: int = 60) -> str:
        """The last lines read, for a failure message."""
        return "\n".join(self.seen[-last:])

    def close(self, timeout: float = 10) -> None:
        """Wait for the end of the output (the process and its children gone), then close the pipe."""
        self._reader.join(timeout)
        if not self._reader.is_alive():
            self._stream.close()

    def wait(self, pattern: str, timeout: float, *, rescan: bool = False) -> re.Match[str]:
        """The first line not yet matched against that matches ``pattern``.

        :param rescan: look at every line read so far too (for lines from
            several processes that may come in either order).
        :raises AssertionError: at end of output, or when ``timeout`` s pass first.
        """
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            if rescan:
                self._next = 0
            while True:
                while self._next < len(self.seen):
                    line = self.seen[self._next]
                    self._next += 1
                    m = rx.search(line)
                    if m:
                        return m
                if self._eof:
                    raise AssertionError(f"the process closed its output before {pattern!r}:\n{self.text()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.text()}")
                self._changed.wait(left)

    def when(self, pattern: str, timeout: float, *, rescan: bool = False) -> defer.Deferred:
        """:meth:`wait` for a test running in the reactor: a Deferred of the match."""
        from twisted.internet import threads
        return threads.deferToThread(self.wait, pattern, timeout, rescan=rescan)


class StackProcess:
    """``twistd -n webrtcstack`` in a child process, for one test.

    Writes ``config`` to a file, starts the stack, waits for its ready line;
    the test's cleanup kills it (by PID) if it still runs.

    :param testcase: the running test (for ``mktemp`` and cleanups).
    :param config: the stack.ini text.
    """

    def __init__(self, testcase: Any, config: str, *, ready: str = r"webrtcstack ready: ", timeout: float = 30,
                 env: dict[str, str] | None = None) -> None:
        self.path = os.path.abspath(testcase.mktemp())
        with open(self.path, "w") as f:
            f.write(config)
        self.proc = subprocess.Popen(TWISTD + ["-n", "--pidfile=", "--logfile=-", "webrtcstack", "-c", self.path],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=os.path.dirname(self.path),
                                     env=dict(os.environ, XDG_STATE_HOME=os.path.dirname(self.path), **(env or {})))
        testcase.addCleanup(self.stop)
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)
        try:
            self.lines.wait(ready, timeout)
        except AssertionError:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the stack's process (by PID)."""
        os.kill(self.proc.pid, signum)

    def status(self, field: str) -> int:
        """A ``/proc/<pid>/status`` figure in kB (``VmHWM``, ``VmRSS``, …)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def stop(self) -> None:
        """Kill the process if it still runs and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.lines.close()


class RedisServer:
    """``redis-server`` (Debian's) on a free loopback port, in a temp dir, with no persistence, for one test.

    :meth:`command` talks to it over a plain blocking socket (our own RESP
    codec), so a test can look at or break the server (``CLIENT KILL``)
    without going through the code under test.  :meth:`kill` stops it by
    PID (SIGKILL); :meth:`start` starts it again on the same port, empty.
    """

    def __init__(self, testcase: Any, port: int | None = None, *, start: bool = True, extra: tuple[str, ...] = ()) -> None:
        self.binary = need_tool("redis-server", "redis-server")
        self.extra = extra
        self.port = port or free_port(socket.SOCK_STREAM)
        self.dir = os.path.abspath(testcase.mktemp())
        os.makedirs(self.dir, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: Lines | None = None
        testcase.addCleanup(self.kill)
        if start:
            self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, empty) and wait for it to accept connections."""
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no", "--maxmemory-policy", "noeviction", "--protected-mode", "no", *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)
        self.lines.wait(r"Ready to accept connections", 20)

    def kill(self) -> None:
        """SIGKILL the server (by PID) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.lines is not None:
            self.lines.close()

    def pause(self, signum: int) -> None:
        """Send ``signum`` (SIGSTOP, SIGCONT) to the server."""
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def command(self, *args: object) -> Any:
        """One command on a fresh connection; its reply (an error reply is returned, not raised)."""
        from webrtcstack.cluster.resp import RespParser, encode

        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(encode(*args))
            parser = RespParser()
            while True:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("redis closed the connection")
                replies = parser.feed(data)
                if replies:
                    return replies[0]

    def clients(self, name_part: str = "") -> list[dict[str, str]]:
        """``CLIENT LIST`` as dicts, those whose name contains ``name_part``."""
        text = self.command("CLIENT", "LIST").decode()
        out = []
        for line in text.splitlines():
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if name_part in fields.get("name", ""):
                out.append(fields)
        return out

    def kill_clients(self, name_part: str) -> int:
        """``CLIENT KILL ID`` each connection whose name contains ``name_part``; how many were killed."""
        return sum(int(self.command("CLIENT", "KILL", "ID", c["id"])) for c in self.clients(name_part))

    def keyspace_events(self, *keys: str) -> "KeyEvents":
        """Subscribe to the keys' keyspace notifications (turned on here); wait with :meth:`KeyEvents.next`."""
        self.command("CONFIG", "SET", "notify-keyspace-events", "KA")
        return KeyEvents(self.port, keys)


class KeyEvents:
    """A blocking subscription to some keys' keyspace events (``set``, ``del``, ``expired``, …), in Redis's order."""

    def __init__(self, port: int, keys: tuple[str, ...]) -> None:
        from webrtcstack.cluster.resp import RespParser, encode

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.parser = RespParser()
        self.pending: list[Any] = []
        self.sock.sendall(encode("SUBSCRIBE", *(f"__keyspace@0__:{key}" for key in keys)))
        for _ in keys:
            self._reply(10)  # the subscribe confirmations

    def _reply(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no keyspace event within {timeout} s")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the subscription")
            self.pending += self.parser.feed(data)
        return self.pending.pop(0)

    def next(self, key: str, event: str, timeout: float = 10) -> None:
        """Wait for the next ``event`` on ``key`` (events before it, on any key, are skipped)."""
        deadline = time.monotonic() + timeout
        channel = f"__keyspace@0__:{key}".encode()
        while True:
            message = self._reply(max(0.0, deadline - time.monotonic()))
            if message[0] == b"message" and message[1] == channel and message[2].decode() == event:
                return

    def close(self) -> None:
        self.sock.close()


class Pebble:
    """Debian's ``pebble`` (Let's Encrypt's test ACME server) with ``pebble-challtestsrv`` as its DNS.

    Both on free loopback ports, for one test.  The DNS answers every name
    with 127.0.0.1 (and no IPv6), so pebble validates http-01 by connecting
    to ``127.0.0.1:<http_port>`` -- the stack's redirect listener.  Pebble's
    own HTTPS uses a self-signed certificate made here (:attr:`ca_file`, what
    ``[tls] acme_ca_file`` trusts).  ``PEBBLE_VA_NOSLEEP`` skips pebble's
    random 0-15 s validation delay and ``PEBBLE_WFE_NONCEREJECT=0`` its
    random bad-nonce replies, so a test's time goes on what it tests.

    :param http_port: where pebble sends http-01 validation requests.
    :param validity_s: the lifetime of the certificates it issues (short, to see renewals).
    """

    def __init__(self, testcase: Any, http_port: int, *, validity_s: int | None = None, start: bool = True) -> None:
        import json

        from webrtcstack.tls import write_self_signed

        self.binary = need_tool("pebble", "pebble")
        self.dns_binary = need_tool("pebble-challtestsrv", "pebble")
        self.dir = os.path.abspath(testcase.mktemp())
        os.makedirs(self.dir)
        self.ca_file = os.path.join(self.dir, "pebble-https.pem")
        key_file = os.path.join(self.dir, "pebble-https.key")
        write_self_signed(["127.0.0.1", "localhost"], self.ca_file, key_file, days=2)
        self.port = free_port(socket.SOCK_STREAM)
        self.management_port = free_port(socket.SOCK_STREAM)
        self.dns_port = free_port(socket.SOCK_DGRAM)
        self.dns_management_port = free_port(socket.SOCK_STREAM)
        settings: dict[str, Any] = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": self.ca_file, "privateKey": key_file,
            "httpPort": http_port, "tlsPort": 5001, "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if validity_s is not None:
            settings["certificateValidityPeriod"] = validity_s
        self.config = os.path.join(self.dir, "pebble.json")
        with open(self.config, "w") as f:
            json.dump({"pebble": settings}, f)
        self.procs: list[tuple[subprocess.Popen[bytes], Lines]] = []
        testcase.addCleanup(self.kill)
        if start:
            self.start()

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _spawn(self, args: list[str], ready: str, env: dict[str, str] | None = None) -> None:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.dir,
                                env=dict(os.environ, **(env or {})))
        assert proc.stdout is not None
        lines = Lines(proc.stdout)
        self.procs.append((proc, lines))
        lines.wait(ready, 20)

    def start(self) -> None:
        """Start the DNS and pebble (again, with no accounts or orders, after :meth:`kill`)."""
        self._spawn([self.dns_binary, "-dns01", f"127.0.0.1:{self.dns_port}",
                     "-management", f"127.0.0.1:{self.dns_management_port}", "-http01", "", "-https01", "",
                     "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                    r"Starting management server")
        self._spawn([self.binary, "-config", self.config, "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                    r"ACME directory available at",
                    env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"})

    def root_pem(self) -> bytes:
        """The root pebble signs with now (it makes a new one each start)."""
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(f"https://127.0.0.1:{self.management_port}/roots/0", context=ctx, timeout=10) as r:
            return r.read()

    def text(self) -> str:
        """Both servers' output so far (for failure messages)."""
        return "\n".join(lines.text() for _, lines in self.procs)

    def kill(self) -> None:
        """SIGKILL both (by PID) and reap them."""
        for proc, lines in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            lines.close()
        self.procs = []
