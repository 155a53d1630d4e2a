"""Tests for :mod:`webrtcstack.turn.ports`."""

from twisted.trial.unittest import SynchronousTestCase

import secrets
from collections import Counter

from webrtcstack.turn.ports import BatchedRandbelow, PortPool


class PortPoolTests(SynchronousTestCase):
    def test_take_all_then_empty(self) -> None:
        """Every port comes out once and then the pool is empty."""
        pool = PortPool(50000, 50009)
        ports = {pool.take() for _ in range(10)}
        self.assertEqual(ports, set(range(50000, 50010)))
        self.assertIsNone(pool.take())

    def test_release(self) -> None:
        """A released port can be taken again; releasing twice or out of range is harmless."""
        pool = PortPool(50000, 50001)
        port = pool.take()
        assert port is not None
        pool.release(port)
        pool.release(port)
        pool.release(1)
        self.assertEqual(pool.free_count(), 2)

    def test_even_pair(self) -> None:
        """An even pair takes p and p+1 with p even, and fails when no pair is left."""
        pool = PortPool(50000, 50003)
        self.assertTrue(pool.take_specific(50001))
        port = pool.take_even_pair()
        self.assertEqual(port, 50002)
        self.assertFalse(pool.is_free(50003))
        self.assertIsNone(pool.take_even_pair())

    def test_specific(self) -> None:
        """A specific port can be taken only while free."""
        pool = PortPool(50000, 50003)
        self.assertTrue(pool.take_specific(50002))
        self.assertFalse(pool.take_specific(50002))
        self.assertFalse(pool.take_specific(40000))


class BatchedRandbelowTests(SynchronousTestCase):
    def test_one_call_per_batch(self) -> None:
        """Random bytes are fetched from the source once per batch of draws."""
        calls: list[int] = []

        def source(n: int) -> bytes:
            calls.append(n)
            return secrets.token_bytes(n)

        draw = BatchedRandbelow(source, batch=16)
        values = [draw(10000) for _ in range(32)]
        self.assertEqual(calls, [64, 64])
        self.assertTrue(all(0 <= v < 10000 for v in values))

    def test_rejects_biased_words(self) -> None:
        """Words at or above the largest multiple of n are thrown away, so no value is favoured."""
        # n = 3: 2**32 - 1 is the one rejected word (2**32 % 3 == 1); the next word is used.
        words = [(2**32 - 1).to_bytes(4, "little"), (7).to_bytes(4, "little")]
        draw = BatchedRandbelow(lambda n: b"".join(reversed(words)), batch=2)
        self.assertEqual(draw(3), 7 % 3)

    def test_roughly_uniform(self) -> None:
        """Draws cover the range evenly (a loose check, far from flaky)."""
        draw = BatchedRandbelow()
        counts = Counter(draw(4) for _ in range(4000))
        self.assertEqual(set(counts), {0, 1, 2, 3})
        self.assertTrue(all(800 < c < 1200 for c in counts.values()), counts)

    def test_bounds(self) -> None:
        """n must be positive; n above 2**32 still works (through secrets.randbelow)."""
        draw = BatchedRandbelow()
        self.assertRaises(ValueError, draw, 0)
        self.assertEqual(draw(1), 0)
        self.assertLess(draw(2**40), 2**40)

    def test_pool_default_uses_batches(self) -> None:
        """A pool made without a randbelow draws through a BatchedRandbelow."""
        self.assertIsInstance(PortPool(50000, 50009)._randbelow, BatchedRandbelow)
