"""HTTPS, WSS, the HTTPS redirect, the one-port TLS listener and certificate reload, on real sockets."""

from __future__ import annotations

import json
import os
import struct

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.trial import unittest

from tests.ops.support import (Collect, bound, client_tls, http_request, make_cert, quiet_notifier, read_http_response,
                               stack_config, tls_connect)
from tests.support import Event, after_each_call
from tests.signaling.wsclient import WsClient, WsClientProtocol, async_test
from webrtcstack.config import load_config
from webrtcstack.service import build_service
from webrtcstack.tls import write_self_signed


def binding_request() -> tuple[bytes, bytes]:
    tid = os.urandom(12)
    return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + tid, tid


class StackCase(unittest.TestCase):
    def start(self, text: str, *, from_file: bool = False):  # type: ignore[no-untyped-def]
        if from_file:
            self.path = os.path.abspath(self.mktemp())
            with open(self.path, "w") as f:
                f.write(text + ("" if "[metrics]" in text else "\n[metrics]\nenabled = no\n"))
            config = load_config(self.path)
        else:
            config = stack_config(text)
        top = build_service(config, reactor, notifier=quiet_notifier(), install_signals=False)
        top.startService()
        self.addCleanup(top.stopService)
        return top

    async def connect(self, port: int, alpn: list[bytes] | None = None, send: bytes = b"") -> Collect:
        proto = await tls_connect(port, client_tls(self.pem, "localhost", alpn), send)
        self.addCleanup(close, proto)
        return proto


def close(proto: Collect) -> defer.Deferred[object]:
    """Close a client connection and wait until the client has seen it go."""
    proto.transport.loseConnection()
    return proto.done.addTimeout(5, reactor)


class HttpsTests(StackCase):
    def setUp(self) -> None:
        self.cert, self.key, self.pem = make_cert(self)
        self.top = self.start(
            "[turn]\nenabled = no\n[http]\nlisten =\ntls_listen = 127.0.0.1:0\nredirect_listen = 127.0.0.1:0\n"
            f"[tls]\ncertificate = {self.cert}\nprivate_key = {self.key}\n")
        self.port = bound(self.top, "https")

    @async_test
    async def test_call_page_over_https(self) -> None:
        """GET / over TLS (hostname checked against the generated certificate) serves the call page."""
        proto = await self.connect(self.port, send=http_request("/"))
        code, headers, body, _ = await read_http_response(proto)
        self.assertEqual(code, 200)
        self.assertIn(b"<html", body.lower())
        self.assertEqual(proto.transport.negotiatedProtocol, None)

    @async_test
    async def test_alpn_http11(self) -> None:
        """A client offering h2 and http/1.1 gets http/1.1."""
        proto = await self.connect(self.port, alpn=[b"h2", b"http/1.1"], send=http_request("/params"))
        code, _, body, _ = await read_http_response(proto)
        self.assertEqual((code, proto.transport.negotiatedProtocol), (200, b"http/1.1"))
        self.assertIn("wss_url", json.loads(body))

    @async_test
    async def test_websocket_over_tls(self) -> None:
        """A WSS client offering h2 and http/1.1 gets http/1.1 by ALPN, registers the id /join gave it over HTTPS, and the hub counts its socket until it closes."""
        post = b"POST /join/tlsroom HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        joined = await self.connect(self.port, send=post)
        code, _, body, _ = await read_http_response(joined)
        self.assertEqual(code, 200)
        client_id = json.loads(body)["params"]["client_id"]
        [hub] = self.top.runtime.hubs
        self.assertEqual(hub.counters.open_ws, 0)

        client = WsClient()
        url = f"wss://localhost:{self.port}/ws"
        factory = WebSocketClientFactory(url, origin=f"https://localhost:{self.port}")

        def build(addr):  # type: ignore[no-untyped-def]
            proto = WsClientProtocol()
            proto.factory = factory
            proto.client = client
            return proto

        factory.buildProtocol = build  # type: ignore[method-assign]
        endpoint = wrapClientTLS(client_tls(self.pem, alpn=[b"h2", b"http/1.1"]),
                                 TCP4ClientEndpoint(reactor, "127.0.0.1", self.port))
        await endpoint.connect(factory)
        await client.open_d.addTimeout(10, reactor)
        self.assertEqual(client.proto.transport.negotiatedProtocol, b"http/1.1")
        registered = Event(lambda: hub.counters.open_ws == 1)
        self.addCleanup(after_each_call(hub, "handle_register", registered))
        client.send({"cmd": "register", "roomid": "tlsroom", "clientid": client_id})
        await registered.wait(10)
        self.assertEqual(self.top.runtime.websockets(), 1)
        gone = Event(lambda: hub.counters.open_ws == 0)
        self.addCleanup(after_each_call(hub, "handle_disconnect", gone))
        await client.close()
        await gone.wait(10)

    @async_test
    async def test_plain_http_redirects_to_https(self) -> None:
        """The redirect listener answers 301 with the same path on the https port."""
        proto = Collect(http_request("/r/room1?debug=1", host="localhost:8080"))
        await TCP4ClientEndpoint(reactor, "127.0.0.1", bound(self.top, "https-redirect")).connect(
            Factory.forProtocol(lambda: proto))
        self.addCleanup(lambda: proto.done)
        code, headers, _, _ = await read_http_response(proto)
        self.assertEqual(code, 301)
        self.assertEqual(headers["location"], f"https://localhost:{self.port}/r/room1?debug=1")


class AcmeWebrootTests(StackCase):
    def setUp(self) -> None:
        self.cert, self.key, self.pem = make_cert(self)
        self.webroot = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.webroot, ".well-known", "acme-challenge"))
        with open(os.path.join(self.webroot, ".well-known", "acme-challenge", "tok-EN_123"), "w") as f:
            f.write("tok-EN_123.thumbprint")
        with open(os.path.join(self.webroot, "secret.txt"), "w") as f:
            f.write("not for the world")
        self.top = self.start(
            "[turn]\nenabled = no\n[http]\nlisten =\ntls_listen = 127.0.0.1:0\nredirect_listen = 127.0.0.1:0\n"
            f"acme_webroot = {self.webroot}\n[tls]\ncertificate = {self.cert}\nprivate_key = {self.key}\n")

    async def get(self, path: str, method: str = "GET") -> tuple[int, dict, bytes]:  # type: ignore[type-arg]
        proto = Collect(http_request(path, host="call.example.org", method=method))
        await TCP4ClientEndpoint(reactor, "127.0.0.1", bound(self.top, "https-redirect")).connect(
            Factory.forProtocol(lambda: proto))
        code, headers, body, _ = await read_http_response(proto)
        await proto.done
        return code, headers, body

    @async_test
    async def test_challenge_files_are_served_and_nothing_else(self) -> None:
        """On the port-80 listener, an ACME http-01 token under acme_webroot is served as is (certbot --webroot can renew); a missing token is 404; a path out of the directory is refused; everything else still redirects."""
        code, headers, body = await self.get("/.well-known/acme-challenge/tok-EN_123")
        self.assertEqual((code, body), (200, b"tok-EN_123.thumbprint"))
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual((await self.get("/.well-known/acme-challenge/missing"))[0], 404)
        for escape in ("/.well-known/acme-challenge/..%2F..%2Fsecret.txt", "/.well-known/acme-challenge/../../secret.txt",
                       "/.well-known/acme-challenge/a/b"):
            code, _, body = await self.get(escape)
            self.assertNotIn(b"not for the world", body)
            self.assertIn(code, (301, 404))
        self.assertEqual((await self.get("/.well-known/acme-challenge/tok-EN_123", "POST"))[0], 405)
        code, headers, _ = await self.get("/r/room")
        self.assertEqual(code, 301)
        self.assertTrue(headers["location"].startswith("https://call.example.org"))


class OnePortTests(StackCase):
    def setUp(self) -> None:
        self.cert, self.key, self.pem = make_cert(self)
        self.top = self.start(
            "[turn]\nlisten = 127.0.0.1:0\ntls_listen = 127.0.0.1:0\nallow_loopback_peers = yes\nrelay_ip = 127.0.0.1\n"
            "[http]\nlisten =\ntls_listen = 127.0.0.1:0\n"
            f"[tls]\ncertificate = {self.cert}\nprivate_key = {self.key}\n")
        self.port = bound(self.top, "https+turns")

    @async_test
    async def test_turn_and_https_share_the_port(self) -> None:
        """STUN with and without ALPN stun.turn, and HTTPS with and without ALPN, all work on the one TLS port."""
        for alpn in (None, [b"stun.turn"], [b"http/1.1", b"stun.turn"]):
            request, tid = binding_request()
            proto = await self.connect(self.port, alpn=alpn, send=request)
            while len(proto.data) < 20:
                await proto.received.get().addTimeout(5, reactor)
            self.assertEqual((proto.data[:2], proto.data[8:20]), (b"\x01\x01", tid), alpn)
        for alpn in (None, [b"http/1.1"]):
            proto = await self.connect(self.port, alpn=alpn, send=http_request("/"))
            code, _, body, _ = await read_http_response(proto)
            self.assertEqual(code, 200, alpn)
        counts = self.top.runtime.demux_factories[0].counts
        self.assertEqual(counts, {"turn": 3, "http": 2})


class ReloadTests(StackCase):
    def setUp(self) -> None:
        self.cert, self.key, self.pem = make_cert(self)
        self.text = ("[turn]\nenabled = no\n[http]\nlisten =\ntls_listen = 127.0.0.1:0\n"
                     f"[tls]\ncertificate = {self.cert}\nprivate_key = {self.key}\n")
        self.top = self.start(self.text, from_file=True)
        self.port = bound(self.top, "https")

    @async_test
    async def test_reload_swaps_certificate_and_keeps_open_connections(self) -> None:
        """After a reload with a new certificate, an open TLS connection keeps working and new ones get the new certificate."""
        old = await self.connect(self.port, send=http_request("/params", close=False))
        code, _, _, end = await read_http_response(old)
        self.assertEqual(code, 200)
        old_cert = old.transport.getPeerCertificate().digest("sha256")

        write_self_signed(["localhost", "127.0.0.1"], self.cert, self.key, days=3)
        self.assertTrue(self.top.reload())
        with open(self.cert, "rb") as f:
            new_pem = f.read()

        old.transport.write(http_request("/params", close=False))
        code, _, body, _ = await read_http_response(old, start=end)
        self.assertEqual(code, 200)
        self.assertEqual(old.transport.getPeerCertificate().digest("sha256"), old_cert)

        fresh = await tls_connect(self.port, client_tls(new_pem), http_request("/"))
        self.addCleanup(close, fresh)
        code, _, _, _ = await read_http_response(fresh)
        self.assertEqual(code, 200)
        self.assertNotEqual(fresh.transport.getPeerCertificate().digest("sha256"), old_cert)

    @async_test
    async def test_bad_config_on_reload_leaves_the_old_running(self) -> None:
        """A broken file on reload is rejected; the listener still serves with the old certificate."""
        with open(self.path, "a") as f:
            f.write("[http]\nbogus = 1\n")
        self.assertFalse(self.top.reload())
        self.assertEqual(self.top.runtime.last_reload["result"], "rejected")
        proto = await self.connect(self.port, send=http_request("/"))
        code, _, _, _ = await read_http_response(proto)
        self.assertEqual(code, 200)

    def test_unusable_certificate_at_start_is_an_error(self) -> None:
        """A stack whose key does not match its certificate is refused when built."""
        from webrtcstack.tls import TlsError

        _, other_key, _ = make_cert(self)
        config = stack_config(self.text.replace(self.key, other_key))
        self.assertRaises(TlsError, build_service, config, reactor, notifier=quiet_notifier(), install_signals=False)

