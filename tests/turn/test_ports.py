"""Tests for :mod:`webrtcstack.turn.ports`."""

from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.turn.ports import PortPool


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
