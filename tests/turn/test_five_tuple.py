"""Tests for :mod:`webrtcstack.turn.five_tuple`."""

from twisted.trial.unittest import SynchronousTestCase

from webrtcstack.turn.five_tuple import FiveTuple, Transport


class FiveTupleTests(SynchronousTestCase):
    def test_equals_plain_tuple(self) -> None:
        """A FiveTuple hashes and compares like the plain tuple the UDP fast path builds."""
        ft = FiveTuple(Transport.UDP, ("10.0.0.1", 5000), ("10.0.0.2", 3478))
        plain = (Transport.UDP, ("10.0.0.1", 5000), ("10.0.0.2", 3478))
        self.assertEqual(ft, plain)
        self.assertEqual({ft: 1}[plain], 1)

    def test_str(self) -> None:
        """The text form brackets IPv6 hosts."""
        ft = FiveTuple(Transport.TCP, ("::1", 5000), ("10.0.0.2", 3478))
        self.assertEqual(str(ft), "TCP [::1]:5000->10.0.0.2:3478")

    def test_stream(self) -> None:
        """Only UDP is a datagram transport."""
        self.assertFalse(Transport.UDP.is_stream)
        self.assertTrue(Transport.TCP.is_stream)
        self.assertTrue(Transport.TLS.is_stream)
