"""Ctrl-C on a real stack: someone alone in a room does not hold the stop; a second Ctrl-C ends a drain at once."""

from __future__ import annotations

import signal
import socket

from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.signaling.wsclient import async_test, http_json, ws_connect
from tests.support import StackProcess, free_port


class CtrlCTests(unittest.TestCase):
    timeout = 60

    def start(self) -> tuple[StackProcess, int]:
        http = free_port(socket.SOCK_STREAM)
        stack = StackProcess(self, f"[stack]\ndrain_seconds = 30\n[turn]\nenabled = no\n[http]\nlisten = 127.0.0.1:{http}\n"
                                   "[signaling]\nping_interval_seconds = 0\n[metrics]\nenabled = no\n")
        return stack, http

    async def member(self, http: int, room: str) -> object:
        client_id = (await http_json("POST", f"http://127.0.0.1:{http}/join/{room}"))["params"]["client_id"]
        ws = await ws_connect(http)
        self.addCleanup(ws.close)
        ws.send({"cmd": "register", "roomid": room, "clientid": client_id})
        return ws

    @async_test
    async def test_alone_in_a_room_does_not_hold_the_stop(self) -> None:
        """One person waiting alone in a room: Ctrl-C stops the stack at once, not after drain_seconds (30 s)."""
        stack, http = self.start()
        ws = await self.member(http, "alone")
        ws.send({"cmd": "register", "roomid": "alone", "clientid": "again"})  # type: ignore[attr-defined]
        reply = await ws.next(10)  # type: ignore[attr-defined]
        self.assertEqual(reply["error"], "Duplicated register request")  # so the first register is done
        stack.signal(signal.SIGINT)
        await stack.lines.when(r"draining: 0 sessions", 10)
        self.assertIn(await deferToThread(stack.proc.wait, 10), (0, -signal.SIGINT, 1))

    @async_test
    async def test_second_ctrl_c_stops_now(self) -> None:
        """Two people in a call: the first Ctrl-C drains and says a second one stops now; the second one does."""
        stack, http = self.start()
        a = await self.member(http, "call")
        b = await self.member(http, "call")
        a.send({"cmd": "send", "msg": "hello"})  # both registered once b has it
        self.assertEqual((await b.next(10))["msg"], "hello")  # type: ignore[attr-defined]
        stack.signal(signal.SIGINT)
        await stack.lines.when(r"draining: 2 sessions, waiting up to 30s", 10)
        await stack.lines.when(r"press Ctrl-C again to stop now", 10)
        stack.signal(signal.SIGINT)
        await stack.lines.when(r"stopping now: 2 sessions cut off", 10)
        await deferToThread(stack.proc.wait, 10)
