# -*- test-case-name: tests.integration.test_turn_offload -*-
"""``[turn] kernel_offload``: load the XDP program, hand its maps to the engine, collect its counts.

The service's ``preflight`` (run by the lifecycle before any listener binds)
builds and loads the program and attaches it to the interfaces; with
``kernel_offload = on`` a failure stops the start with one line naming what
is missing (exit status 2), with ``auto`` it is one log line and the Python
path.  Once running, the engine's allocation manager writes the maps through
:class:`~webrtcstack.turn.offload.routes.KernelRoutes`, and every second the
service credits what the kernel forwarded to the engine's counters.  On stop
it takes every route down and closes the program: the kernel detaches it.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from typing import Any

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger

from webrtcstack.config import StackConfig
from webrtcstack.sockets import StartFailed
from webrtcstack.turn.adapters.bpf import BpfError, XdpProgram, build_object, load_program
from webrtcstack.turn.offload.routes import KernelRoutes, local_checker

__all__ = ["OffloadService", "OffloadFailed", "host_addresses", "interfaces_up"]

log = Logger()
_IFF_UP = 0x1
_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
#: how often the kernel's per-channel counts are credited to the counters (seconds)
COLLECT_INTERVAL_S = 1.0


class OffloadFailed(StartFailed):
    """``kernel_offload = on`` and the program cannot be loaded or attached here."""


def host_addresses() -> set[str]:
    """This host's IPv4 addresses, one per interface (``SIOCGIFADDR``), for ``is_local``; read at start."""
    found = {"127.0.0.1"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            found.add(socket.inet_ntoa(raw[20:24]))
    return found


def interfaces_up() -> list[str]:
    """Every interface of this process's network namespace that is up (``SIOCGIFFLAGS``).

    Not /sys/class/net: that shows the namespace of whoever mounted sysfs.
    """
    names = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, struct.pack("16sH14x", name.encode()[:15], 0))
            except OSError:
                continue
            if struct.unpack_from("H", raw, 16)[0] & _IFF_UP:
                names.append(name)
    return names


class OffloadService(service.Service):
    """Owns the XDP program while the stack runs (see the module docstring)."""

    def __init__(self, config: StackConfig, driver: Any, reactor: Any) -> None:
        self.setName("turn kernel offload")
        self.mode = config.turn.kernel_offload
        self.interfaces = config.turn.kernel_offload_interfaces
        self.max_entries = config.turn.kernel_offload_max_entries
        self.driver = driver
        self.reactor = reactor
        self.program: XdpProgram | None = None
        self.routes: KernelRoutes | None = None
        self._loop: task.LoopingCall | None = None
        #: why the offload is not in use (None: in use, or not asked for)
        self.unavailable: str | None = None
        self._tried = False

    def preflight(self) -> None:
        """Build, load and attach the program (before anything binds)."""
        if self._tried or self.mode == "off":
            return
        self._tried = True
        interfaces = list(self.interfaces) or interfaces_up()
        try:
            program = load_program(build_object(), self.max_entries)
            try:
                for name in interfaces:
                    program.attach(name)
            except BaseException:
                program.close()
                raise
        except BpfError as e:
            reason = e.strerror or str(e)
            if self.mode == "on":
                raise OffloadFailed(f"[turn] kernel_offload = on, but {reason}") from None
            self.unavailable = reason
            log.warn("TURN kernel offload unavailable ({reason}); every channel stays on the Python path",
                     reason=reason)
            return
        self.program = program
        engine = self.driver.engine
        self.routes = KernelRoutes(program.maps["c2p"], program.maps["p2c"], engine.counters,
                                   local_checker(host_addresses()))
        engine.manager.routes = self.routes
        log.info("TURN kernel offload: XDP program attached to {interfaces}; UDP channels of IPv4 clients "
                 "are forwarded in the kernel", interfaces=", ".join(interfaces))

    def startService(self) -> None:
        self.preflight()
        service.Service.startService(self)
        if self.routes is not None:
            self._loop = task.LoopingCall(self.routes.collect)
            self._loop.clock = self.reactor
            self._loop.start(COLLECT_INTERVAL_S, now=False)

    def stopService(self) -> None:
        service.Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self.routes is not None:
            self.routes.close()
            self.driver.engine.manager.routes = None
        if self.program is not None:
            self.program.close()
            self.program = None
        self._tried = False
