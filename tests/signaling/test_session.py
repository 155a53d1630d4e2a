"""One socket's protocol: frames, collider's error texts, limits."""

from __future__ import annotations

import json

from twisted.trial import unittest

from webrtcstack.rooms.model import RoomRegistry
from webrtcstack.rooms.storage import MemoryStorage
from webrtcstack.signaling.hub import Deliver, Reply, SignalingHub, SignalingSession
from webrtcstack.signaling.messages import Errors, envelope


def frame(**kw) -> bytes:
    return json.dumps(kw).encode()


class SessionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.hub = SignalingHub(MemoryStorage(), max_queued=2)
        self.a = SignalingSession(self.hub, "ca", max_message_bytes=300, messages_per_second=5, now=0)
        self.b = SignalingSession(self.hub, "cb", now=0)

    def assertError(self, effects, text: str, close: bool = True) -> None:
        self.assertEqual(effects, [Reply(envelope(error=text), close)])

    def test_register_and_send(self) -> None:
        """register gives no reply; send reaches the registered peer."""
        self.assertEqual(self.a.handle_frame(frame(cmd="register", roomid="r", clientid="a"), now=0), [])
        self.b.handle_frame(frame(cmd="register", roomid="r", clientid="b"), now=0)
        effects = self.a.handle_frame(frame(cmd="send", msg="hello"), now=0)
        self.assertEqual(effects, [Deliver("r", "b", envelope("hello"))])

    def test_unknown_keys_ignored(self) -> None:
        """Unknown keys in a frame are ignored."""
        self.assertEqual(self.a.handle_frame(frame(cmd="register", roomid="r", clientid="a", extra=1), now=0), [])

    def test_duplicated_register_request(self) -> None:
        """A second register on one socket is an error that closes it."""
        self.a.handle_frame(frame(cmd="register", roomid="r", clientid="a"), now=0)
        self.assertError(self.a.handle_frame(frame(cmd="register", roomid="r", clientid="a"), now=0), Errors.DUPLICATED_REGISTER_REQUEST)

    def test_missing_ids(self) -> None:
        """register without roomid or clientid is an error that closes."""
        self.assertError(self.a.handle_frame(frame(cmd="register", roomid="r"), now=0), Errors.INVALID_REGISTER)
        self.assertError(self.a.handle_frame(frame(cmd="register", clientid="a", roomid=""), now=0), Errors.INVALID_REGISTER)

    def test_bad_ids(self) -> None:
        """Ids with other characters are refused."""
        self.assertError(self.a.handle_frame(frame(cmd="register", roomid="r/x", clientid="a"), now=0), Errors.BAD_ID)

    def test_send_before_register(self) -> None:
        """send before register is an error that closes."""
        self.assertError(self.a.handle_frame(frame(cmd="send", msg="x"), now=0), Errors.NOT_REGISTERED)

    def test_send_without_msg(self) -> None:
        """send with an empty or missing msg is an error that closes (no re-send of the previous msg)."""
        self.a.handle_frame(frame(cmd="register", roomid="r", clientid="a"), now=0)
        self.a.handle_frame(frame(cmd="send", msg="x"), now=0)
        self.assertError(self.a.handle_frame(frame(cmd="send"), now=0), Errors.INVALID_SEND)

    def test_unknown_cmd_keeps_socket(self) -> None:
        """An unknown cmd is an error that keeps the socket open."""
        self.assertError(self.a.handle_frame(frame(cmd="dance"), now=0), Errors.UNEXPECTED_CMD, close=False)
        self.assertError(self.a.handle_frame(frame(roomid="r"), now=0), Errors.UNEXPECTED_CMD, close=False)

    def test_bad_json(self) -> None:
        """A frame that is not a JSON object of strings closes with the JSON.Receive prefix."""
        for payload in (b"{nope", b"[1]", frame(cmd=1), b"\xff"):
            effects = self.a.handle_frame(payload, now=0)
            self.assertEqual(len(effects), 1)
            body = json.loads(effects[0].frame)
            self.assertTrue(body["error"].startswith(Errors.JSON_PREFIX), body)
            self.assertTrue(effects[0].close)

    def test_size_limit(self) -> None:
        """A frame over max_message_bytes is refused with its limit and the socket closes."""
        self.assertError(self.a.handle_frame(b" " * 301, now=0), Errors.too_large(300))

    def test_rate_limit(self) -> None:
        """Frames past messages_per_second are dropped with an error; the socket stays open and recovers."""
        self.a.handle_frame(frame(cmd="register", roomid="r", clientid="a"), now=0)
        for _ in range(4):
            self.a.handle_frame(frame(cmd="send", msg="x"), now=0)
        self.assertError(self.a.handle_frame(frame(cmd="send", msg="x"), now=0), Errors.too_fast(5), close=False)
        self.hub.handle_register("r", "b", "cb", now=0)
        self.assertEqual(len(self.a.handle_frame(frame(cmd="send", msg="y"), now=1)), 1)

    def test_queue_full_keeps_socket(self) -> None:
        """A full queue on the WebSocket path is reported without closing."""
        self.a.handle_frame(frame(cmd="register", roomid="r", clientid="a"), now=0)
        self.a.handle_frame(frame(cmd="send", msg="1"), now=0)
        self.a.handle_frame(frame(cmd="send", msg="2"), now=0)
        self.assertError(self.a.handle_frame(frame(cmd="send", msg="3"), now=0), Errors.QUEUE_FULL, close=False)

    def test_errors_counted(self) -> None:
        """Every error sent counts in wserrors."""
        self.a.handle_frame(b"{", now=0)
        self.b.handle_frame(frame(cmd="x"), now=0)
        self.assertEqual(self.hub.counters.ws_errors, 2)

    def test_close(self) -> None:
        """Closing a registered socket starts the grace period once; closing an unregistered one does nothing."""
        self.a.handle_frame(frame(cmd="register", roomid="r", clientid="a"), now=0)
        self.a.handle_close(now=1)
        self.a.handle_close(now=2)
        self.assertEqual(self.hub.peer("r", "a").remove_at, 11)
        self.assertEqual(self.b.handle_close(now=0), [])

    def test_hijack_closes(self) -> None:
        """With a registry, registering an id the room server did not issue closes the socket."""
        storage = MemoryStorage()
        hub = SignalingHub(storage, rooms=RoomRegistry(storage))
        s = SignalingSession(hub, "c", now=0)
        self.assertError(s.handle_frame(frame(cmd="register", roomid="r", clientid="12345678"), now=0), Errors.NOT_ISSUED)
        self.assertFalse(s.registered)


class EnvelopeTests(unittest.TestCase):
    def test_shape(self) -> None:
        """Both keys are always there, msg first, with a trailing newline."""
        self.assertEqual(envelope("m"), '{"msg":"m","error":""}\n')
        self.assertEqual(envelope(error="e"), '{"msg":"","error":"e"}\n')

    def test_go_escapes(self) -> None:
        """<, > and & are escaped as Go does; other text stays UTF-8."""
        self.assertEqual(envelope('<a&b>"é'), '{"msg":"\\u003ca\\u0026b\\u003e\\"é","error":""}\n')
        self.assertEqual(json.loads(envelope('<a&b>"é\u2028'))["msg"], '<a&b>"é\u2028')


class StallCreditTests(unittest.TestCase):
    """Frames that waited through a reactor stall are not a burst against the rate."""

    def session(self):  # type: ignore[no-untyped-def]
        hub = SignalingHub(MemoryStorage())
        return SignalingSession(hub, "c", messages_per_second=5, burst=5, now=0)

    def test_burst_without_stall_is_limited(self) -> None:
        """20 frames at once with no stall: the burst (5) passes, the rest get the rate error."""
        s = self.session()
        errors = [e for _ in range(20) for e in s.handle_frame(b'{"cmd":"x"}', now=0) if "Too many" in e.frame]
        self.assertEqual(len(errors), 15)

    def test_frames_after_a_stall_pass(self) -> None:
        """After a 15 s stall, the 75 frames a 5/s client sent meanwhile all pass; the stall is credited once."""
        s = self.session()
        stall = (1, 15.0)
        errors = [e for _ in range(75) for e in s.handle_frame(b'{"cmd":"x"}', now=15, stall=stall) if "Too many" in e.frame]
        self.assertEqual(errors, [])
        more = [e for _ in range(20) for e in s.handle_frame(b'{"cmd":"x"}', now=15, stall=stall) if "Too many" in e.frame]
        self.assertEqual(len(more), 15)  # credited once: what is left is the ordinary burst

    def test_credit_survives_the_next_refill(self) -> None:
        """Frames read one after another after a stall (the clock moving between them) keep the credit: a refill never takes a bonus back."""
        s = self.session()
        stall = (1, 15.0)
        errors = [e for i in range(75) for e in s.handle_frame(b'{"cmd":"x"}', now=15 + i * 1e-4, stall=stall)
                  if "Too many" in e.frame]
        self.assertEqual(errors, [])
