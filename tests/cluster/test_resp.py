"""The RESP codec and ``[redis] url`` parsing (sans-IO)."""

from __future__ import annotations

from twisted.trial import unittest

from webrtcstack.cluster.resp import ProtocolError, RedisError, RespParser, encode, parse_url

STREAM = (b"+OK\r\n:-42\r\n$5\r\nhe\r\nl\r\n$-1\r\n*3\r\n$1\r\na\r\n*1\r\n:1\r\n$0\r\n\r\n"
          b"-NOSCRIPT No matching script\r\n*-1\r\n")
EXPECTED = [b"OK", -42, b"he\r\nl", None, [b"a", [1], b""], RedisError("NOSCRIPT No matching script"), None]


def same(a: object, b: object) -> bool:
    if isinstance(a, RedisError):
        return isinstance(b, RedisError) and str(a) == str(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


class RespTests(unittest.TestCase):
    def test_encode(self) -> None:
        """Commands go out as arrays of bulk strings; str, bytes, int and float arguments."""
        self.assertEqual(encode("SET", b"k\r\n", 5, 1.5), b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n5\r\n$3\r\n1.5\r\n")
        self.assertRaises(TypeError, encode, "SET", True)
        self.assertRaises(TypeError, encode, "SET", None)

    def test_every_split(self) -> None:
        """Every reply type comes out the same however the stream is cut (each of two cut points)."""
        for cut in range(len(STREAM) + 1):
            for cut2 in range(cut, len(STREAM) + 1, 7):
                parser = RespParser()
                got = parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:cut2]) + parser.feed(STREAM[cut2:])
                self.assertTrue(same(got, EXPECTED), (cut, cut2, got))
        self.assertEqual(EXPECTED[5].kind, "NOSCRIPT")  # type: ignore[union-attr]

    def test_garbage_is_a_protocol_error(self) -> None:
        """Bytes that are not RESP raise ProtocolError (the caller drops the connection)."""
        for bad in (b"?what\r\n", b":12x\r\n", b"$5\r\nabcdefg\r\n", b"$-5\r\n", b"\r\n", b"*99999999999\r\n",
                    b"x" * 70000):
            self.assertRaises(ProtocolError, RespParser().feed, bad)


class UrlTests(unittest.TestCase):
    def test_forms(self) -> None:
        """redis://, rediss:// and unix:// with user, password (percent-encoded) and database."""
        u = parse_url("redis://app:p%40ss@redis.internal:6380/2")
        self.assertEqual((u.scheme, u.host, u.port, u.db, u.username, u.password),
                         ("redis", "redis.internal", 6380, 2, "app", "p@ss"))
        self.assertEqual(u.display(), "redis://app@redis.internal:6380/2")  # no password in logs
        self.assertEqual(parse_url("rediss://[::1]").display(), "rediss://[::1]:6379/0")
        u = parse_url("unix://:secret@/run/redis/redis.sock?db=3")
        self.assertEqual((u.scheme, u.path, u.db, u.password), ("unix", "/run/redis/redis.sock", 3, "secret"))

    def test_bad_urls_say_why(self) -> None:
        """Wrong scheme, no host, a path that is not a number, a relative socket path: a sentence each."""
        for bad, words in (("http://h", "not a URL such as"), ("redis://", "names no host"),
                           ("redis://h/x", "database number"), ("unix://relative.sock", "absolute socket path"),
                           ("redis://h:99999", "not a Redis URL"), ("redis://h/0?x=1", "takes no query")):
            with self.assertRaises(ValueError) as e:
                parse_url(bad)
            self.assertIn(words, str(e.exception), bad)
