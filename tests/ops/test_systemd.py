"""The systemd notify protocol against a fake NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket

from twisted.internet import task
from twisted.trial import unittest

from webrtcstack.ops.systemd import SystemdNotifier, notify_address, send_notify, watchdog_interval_s


class FakeSystemd:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)

    def messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


class NotifyTests(unittest.TestCase):
    def setUp(self) -> None:
        # AF_UNIX paths are limited to ~107 bytes; trial's temp paths can be longer.
        self.path = f"/tmp/wrs-notify-{os.getpid()}-{id(self)}.sock"
        self.fake = FakeSystemd(self.path)
        self.addCleanup(os.unlink, self.path)
        self.addCleanup(self.fake.close)
        self.clock = task.Clock()

    def test_ready_reloading_stopping(self) -> None:
        """ready, reloading/reloaded and stopping each send their message with MAINPID on READY."""
        n = SystemdNotifier(self.clock, environ={"NOTIFY_SOCKET": self.path}, pid=4242)
        self.assertTrue(n.enabled)
        n.ready(status="serving")
        n.reloading()
        n.reloaded()
        n.stopping()
        got = self.fake.messages()
        self.assertEqual(got[0], "READY=1\nMAINPID=4242\nSTATUS=serving")
        self.assertRegex(got[1], r"^RELOADING=1\nMONOTONIC_USEC=\d+$")
        self.assertEqual(got[2:], ["READY=1", "STOPPING=1"])

    def test_watchdog_pings_at_half_the_interval(self) -> None:
        """With WATCHDOG_USEC set, WATCHDOG=1 goes out at once and every half interval until stopped."""
        n = SystemdNotifier(self.clock, environ={"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": "4000000",
                                                 "WATCHDOG_PID": "7"}, pid=7)
        n.ready()
        self.assertEqual(self.fake.messages(), ["READY=1\nMAINPID=7", "WATCHDOG=1"])
        self.clock.advance(2)
        self.clock.advance(2)
        self.assertEqual(self.fake.messages(), ["WATCHDOG=1", "WATCHDOG=1"])
        n.stop_watchdog()
        self.clock.advance(10)
        self.assertEqual(self.fake.messages(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_watchdog_for_another_pid_is_ignored(self) -> None:
        """WATCHDOG_PID naming another process turns the watchdog off, as does no WATCHDOG_USEC."""
        self.assertIsNone(watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, 2))
        self.assertIsNone(watchdog_interval_s({}, 2))
        self.assertEqual(watchdog_interval_s({"WATCHDOG_USEC": "1000000"}, 2), 0.5)

    def test_abstract_socket_name(self) -> None:
        """An @name NOTIFY_SOCKET is the abstract namespace."""
        name = f"wrs-abstract-{os.getpid()}-{id(self)}"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind("\0" + name)
        self.assertTrue(send_notify("READY=1", {"NOTIFY_SOCKET": "@" + name}))
        self.assertEqual(s.recv(100), b"READY=1")

    def test_outside_systemd_nothing_is_sent(self) -> None:
        """Without NOTIFY_SOCKET every call is a no-op that reports False."""
        self.assertIsNone(notify_address({}))
        self.assertFalse(send_notify("READY=1", {}))
        SystemdNotifier(self.clock, environ={}).ready()
        self.assertEqual(self.clock.getDelayedCalls(), [])
