"""Tests for :mod:`webrtcstack.limits`."""

from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.limits import ReplyRateLimiter, TokenBucket


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_refill(self) -> None:
        """The bucket allows its burst, refuses more, and refills at its rate."""
        bucket = TokenBucket(100, 200, now=0)
        self.assertTrue(bucket.take(150, 0))
        self.assertFalse(bucket.take(100, 0))
        self.assertTrue(bucket.take(100, 0.5))
        self.assertFalse(bucket.take(200, 10) and bucket.take(1, 10))


class ReplyRateLimiterTests(SynchronousTestCase):
    def test_per_host(self) -> None:
        """Each host gets its own budget per second."""
        limiter = ReplyRateLimiter(2)
        self.assertEqual([limiter.allow("a", 0) for _ in range(3)], [True, True, False])
        self.assertTrue(limiter.allow("b", 0))
        self.assertTrue(limiter.allow("a", 1))

    def test_bounded(self) -> None:
        """The table never grows past max_hosts."""
        limiter = ReplyRateLimiter(1, max_hosts=10)
        for i in range(100):
            limiter.allow(f"h{i}", 0)
            self.assertLessEqual(len(limiter), 10)
