"""A stack that stalls (SIGSTOP, swapping, a long pause) does not punish the clients that kept to the rate.

:class:`StallTests` stops a real stack process with SIGSTOP while the
test's clients keep sending; :class:`ClockStallTests` makes the same stall
with the hub's ``task.Clock``, in each order a reactor may take after one:
the waiting frames read first, or the overdue timers run first.
"""

from __future__ import annotations

import signal
import socket

from twisted.internet import reactor, task
from twisted.trial import unittest

from tests.signaling.webcase import WebCase, make_config
from tests.signaling.wsclient import async_test, http_json, ws_connect
from tests.support import StackProcess, free_port
from webrtcstack.signaling.protocol import PUT_OFF_S

#: how long the stack is stopped (longer than the register timeout below, and than STALL_S)
STOPPED_S = 3.0
#: messages a client sends while the stack is stopped: under the average rate, over the burst
SENT_DURING_STALL = 8


def pause(seconds: float) -> object:
    """Let ``seconds`` pass in the test's reactor (the stall being injected, not a wait for a result)."""
    return task.deferLater(reactor, seconds, lambda: None)


class StallTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.port = free_port(socket.SOCK_STREAM)
        # 4 messages/s with a burst of 4: 8 messages over a 3 s stall keep to
        # the average rate (8 < 12) but arrive together, over the burst.
        self.stack = StackProcess(self, "[turn]\nenabled = no\n"
                                        f"[http]\nlisten = 127.0.0.1:{self.port}\n"
                                        "[signaling]\nregister_timeout_seconds = 2\nmessages_per_second = 4\n"
                                        "message_burst = 4\nping_interval_seconds = 0\n"
                                        "[metrics]\nenabled = no\n")
        self.url = f"http://127.0.0.1:{self.port}"

    async def member(self, room: str) -> tuple[str, object]:
        """Join ``room`` over HTTP and open a socket (not yet registered)."""
        client = (await http_json("POST", f"{self.url}/join/{room}"))["params"]["client_id"]
        ws = await ws_connect(self.port)
        self.addCleanup(ws.close)
        return client, ws

    @async_test
    async def test_sigstop_punishes_no_one(self) -> None:
        """Messages sent at the allowed rate through a 3 s SIGSTOP are all delivered, in order, with no error; a register sent during the stall (its timeout passed meanwhile) is honoured."""
        a_id, a = await self.member("stall")
        b_id, b = await self.member("stall")
        for ws, client in ((a, a_id), (b, b_id)):
            ws.send({"cmd": "register", "roomid": "stall", "clientid": client})
        a.send({"cmd": "send", "msg": "before"})
        self.assertEqual((await b.next())["msg"], "before")
        # c joins another room and opens its socket; its register timeout (2 s) passes during the stall.
        c_id, c = await self.member("late")
        d_id, d = await self.member("late")
        d.send({"cmd": "register", "roomid": "late", "clientid": d_id})

        self.stack.signal(signal.SIGSTOP)
        self.addCleanup(self.stack.signal, signal.SIGCONT)
        await pause(0.5)
        c.send({"cmd": "register", "roomid": "late", "clientid": c_id})
        for i in range(SENT_DURING_STALL):
            a.send({"cmd": "send", "msg": str(i)})
            await pause((STOPPED_S - 0.5) / SENT_DURING_STALL)
        self.stack.signal(signal.SIGCONT)

        got = [(await b.next(10))["msg"] for _ in range(SENT_DURING_STALL)]
        self.assertEqual(got, [str(i) for i in range(SENT_DURING_STALL)])
        self.assertTrue(a.queue.pending == [], a.queue.pending)  # no "Too many messages" error to the sender
        # c registered in time: d's message reaches it, and its socket is open.
        d.send({"cmd": "send", "msg": "after"})
        self.assertEqual((await c.next(10))["msg"], "after")
        self.assertFalse(c.is_closed)
        self.stack.lines.wait(r"the process was stalled for [3-9]\.\d s", 10)


class ClockStallTests(WebCase, unittest.TestCase):
    def setUp(self) -> None:
        self.start_web(make_config(signaling={"messages_per_second": "4", "message_burst": "4",
                                              "register_timeout_seconds": "2"}))

    @async_test
    async def test_frames_read_before_the_heartbeat(self) -> None:
        """The clock jumps 15 s with no timer run (the reactor reads the sockets first): 20 frames a 4/s client sent meanwhile all pass."""
        a = (await self.join("room"))["params"]["client_id"]
        b = (await self.join("room"))["params"]["client_id"]
        ws_a, ws_b = await self.registered("room", a), await self.registered("room", b)
        self.clock.rightNow += 15  # time passed; no timer has run yet
        for i in range(20):
            ws_a.send({"cmd": "send", "msg": str(i)})
        got = [(await ws_b.next())["msg"] for _ in range(20)]
        self.assertEqual(got, [str(i) for i in range(20)])
        self.assertEqual(ws_a.queue.pending, [])
        self.assertEqual(self.app.runner.stall[0], 1)

    @async_test
    async def test_register_read_before_its_late_timeout(self) -> None:
        """The clock jumps 15 s and runs the overdue timers first: the register timeout is put off a moment, so the register frame that waited is honoured."""
        c = (await self.join("room"))["params"]["client_id"]
        ws_c = await self.ws()
        self.clock.advance(15)  # the register timeout (2 s) is overdue and runs before any frame is read
        self.assertFalse(ws_c.is_closed)
        await self.register(ws_c, "room", c)
        self.clock.advance(PUT_OFF_S)  # the put-off timeout: the socket has registered since
        self.assertEqual(self.app.signaling_factory.unregistered_closed, 0)
        d = (await self.join("room"))["params"]["client_id"]
        ws_d = await self.registered("room", d)
        ws_d.send({"cmd": "send", "msg": "hello"})
        self.assertEqual((await ws_c.next())["msg"], "hello")
