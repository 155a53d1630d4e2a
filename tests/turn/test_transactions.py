"""Tests for :mod:`webrtcstack.turn.transactions`."""

from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.turn.transactions import TransactionCache


class TransactionCacheTests(SynchronousTestCase):
    def test_hit_until_expiry(self) -> None:
        """A stored response is returned until its lifetime ends."""
        cache = TransactionCache(lifetime_s=40)
        cache.put("k", b"r", 0)
        self.assertEqual(cache.get("k", 39.9), b"r")
        self.assertIsNone(cache.get("k", 40))
        self.assertEqual(cache.next_deadline(), 40)
        cache.expire(40)
        self.assertEqual(len(cache), 0)
        self.assertIsNone(cache.next_deadline())

    def test_bounded(self) -> None:
        """The oldest entries go when the cache is full."""
        cache = TransactionCache(max_entries=3)
        for i in range(5):
            cache.put(i, b"x", 0)
        self.assertEqual(len(cache), 3)
        self.assertIsNone(cache.get(0, 0))
        self.assertEqual(cache.get(4, 0), b"x")
