"""systemd's notify protocol, written directly (it is one datagram per message).

With ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name``
for the abstract namespace) and waits for ``READY=1`` before it counts the
service as started; ``STOPPING=1`` says we are shutting down (draining),
``RELOADING=1`` … ``READY=1`` brackets a reload, and ``WATCHDOG=1`` must come
at least every ``WATCHDOG_USEC`` microseconds when the unit sets
``WatchdogSec``.  Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

log = Logger()


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket address from ``NOTIFY_SOCKET``, or None when not under systemd."""
    path = environ.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    return None


def send_notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one notify message; True if it was sent (False outside systemd or on error)."""
    address = notify_address(os.environ if environ is None else environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as e:
        log.warn("systemd notify failed: {error}", error=e)
        return False
    return True


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """How often to send ``WATCHDOG=1`` (half of ``WATCHDOG_USEC``), or None when off or not for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None
    return int(usec) / 2_000_000


class SystemdNotifier:
    """READY/STOPPING/RELOADING/WATCHDOG for one process.

    :param clock: a reactor or :class:`twisted.internet.task.Clock` for the watchdog timer.
    :param environ: where ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` come from.
    """

    def __init__(self, clock: Any, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        self.clock = clock
        self.environ = dict(os.environ if environ is None else environ)
        self.pid = os.getpid() if pid is None else pid
        self._watchdog: task.LoopingCall | None = None

    @property
    def enabled(self) -> bool:
        """Whether we run under systemd with a notify socket."""
        return notify_address(self.environ) is not None

    def send(self, message: str) -> bool:
        """Send ``message`` if under systemd."""
        return send_notify(message, self.environ)

    def ready(self, status: str = "") -> None:
        """Every port is bound: tell systemd, and start the watchdog pings."""
        self.send(f"READY=1\nMAINPID={self.pid}" + (f"\nSTATUS={status}" if status else ""))
        interval = watchdog_interval_s(self.environ, self.pid)
        if interval is not None and self._watchdog is None:
            self._watchdog = task.LoopingCall(self.send, "WATCHDOG=1")
            self._watchdog.clock = self.clock
            self._watchdog.start(interval, now=True)

    def reloading(self) -> None:
        """A reload starts (``READY=1`` follows when it is done)."""
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def reloaded(self, status: str = "") -> None:
        """A reload is over (applied or rejected)."""
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> None:
        """A new one-line status for ``systemctl status`` (no state change)."""
        self.send(f"STATUS={status}")

    def stopping(self, status: str = "") -> None:
        """Shutdown (drain) has begun."""
        self.send("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def stop_watchdog(self) -> None:
        """Cancel the watchdog pings (at the very end)."""
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None
