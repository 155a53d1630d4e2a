"""The Origin allow-list for signaling WebSockets."""

from __future__ import annotations

from twisted.trial import unittest

from webrtcstack.signaling.origin import origin_allowed


class OriginTests(unittest.TestCase):
    def test_default(self) -> None:
        """By default: no Origin, the site's own host (any port) and localhost pass; others fail."""
        ok = lambda o: origin_allowed(o, allowed=(), host_header="call.example.org:8089")  # noqa: E731
        for origin in (None, "", "https://call.example.org", "http://call.example.org:8080",
                       "http://localhost:3000", "http://127.0.0.1", "http://[::1]:8080"):
            self.assertTrue(ok(origin), origin)
        for origin in ("https://evil.example", "null", "https://call.example.org.evil.example"):
            self.assertFalse(ok(origin), origin)

    def test_list(self) -> None:
        """A configured list allows its entries and the site itself, but no longer localhost."""
        allowed = ("https://app.example.com",)
        self.assertTrue(origin_allowed("https://APP.example.com", allowed=allowed, host_header="h"))
        self.assertTrue(origin_allowed("https://h", allowed=allowed, host_header="h:1"))
        self.assertFalse(origin_allowed("http://localhost", allowed=allowed, host_header="h"))
        self.assertFalse(origin_allowed("http://app.example.com", allowed=allowed, host_header="h"))

    def test_public_url_and_star(self) -> None:
        """public_url's origin and * always pass."""
        self.assertTrue(origin_allowed("https://meet.example.org", allowed=(), host_header="10.0.0.1", public_url="https://meet.example.org"))
        self.assertTrue(origin_allowed("https://any.example", allowed=("*",), host_header="h"))
