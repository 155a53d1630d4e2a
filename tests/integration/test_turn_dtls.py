"""TURN over DTLS (``[turn] dtls``) on real sockets: coturn's uclient, the cookie exchange, statelessness.

The stack runs in process with a self-signed certificate; DTLS clients are
coturn's ``turnutils_uclient -S`` (UDP) and pyOpenSSL on memory BIOs driving a
real UDP socket.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from typing import Any

from OpenSSL import SSL
from twisted.internet import defer, error, protocol, reactor, threads, utils
from twisted.trial import unittest

from tests.support import free_port, need_tool
from webrtcstack.config import ConfigError, parse_config
from webrtcstack.service import build_service
from webrtcstack.stun.constants import AttrType, MessageClass, Method
from webrtcstack.stun.message import Message, decode, encode
from webrtcstack.tls import write_self_signed
from webrtcstack.turn.adapters.dtls import DtlsService

LOST = re.compile(rb"Total lost packets (\d+) \(([\d.]+)%\)")
SENT = re.compile(rb"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")


def find(parent: Any, kind: type) -> Any:
    for child in parent:
        if isinstance(child, kind):
            return child
        if hasattr(child, "__iter__"):
            found = find(child, kind)
            if found is not None:
                return found
    return None


class DtlsClient:
    """A DTLS client on a real UDP socket (blocking, with a timeout; run it in a thread)."""

    def __init__(self, port: int, max_version: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(3)
        self.sock.connect(("127.0.0.1", port))
        ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        if max_version is not None:
            ctx.set_max_proto_version(max_version)
            ctx.set_cipher_list(b"ALL:@SECLEVEL=0")
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        #: the first datagram the server answered with (a HelloVerifyRequest expected)
        self.first_answer = b""

    def flush(self) -> None:
        while True:
            try:
                self.sock.send(self.conn.bio_read(65535))
            except SSL.WantReadError:
                return

    def handshake(self) -> str:
        for _ in range(20):
            try:
                self.conn.do_handshake()
                self.flush()
                return str(self.conn.get_protocol_version_name())
            except SSL.WantReadError:
                self.flush()
                data = self.sock.recv(65535)
                if not self.first_answer:
                    self.first_answer = data
                self.conn.bio_write(data)
        raise AssertionError("no handshake")

    def request(self, message: bytes) -> Message:
        self.conn.send(message)
        self.flush()
        self.conn.bio_write(self.sock.recv(65535))
        return decode(self.conn.recv(65535))

    def close(self) -> None:
        self.sock.close()


class _Ended(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class DtlsTests(unittest.TestCase):
    timeout = 90

    def start(self, extra: str = "") -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        write_self_signed(["localhost"], cert, key)
        self.port = free_port()
        self.tls_port = free_port()
        config = parse_config(
            f"[turn]\nlisten = 127.0.0.1:{self.port}\ntls_listen = 127.0.0.1:{self.tls_port}\ndtls = yes\n"
            f"allow_loopback_peers = yes\nrelay_ip = 127.0.0.1\nusers = alice:pw-alice\n"
            f"static_auth_secret = s-123456789\n{extra}[tls]\ncertificate = {cert}\nprivate_key = {key}\n"
            f"[http]\nenabled = no\n[metrics]\nenabled = no\n[stack]\nstate_dir = {directory}\n", "dtls.ini")
        self.cert, self.key = cert, key
        self.top = build_service(config, reactor, install_signals=False)
        self.top.startService()
        self.addCleanup(self.top.stopService)
        self.dtls_service = find(self.top, DtlsService)
        self.listener = self.dtls_service.listener

    @defer.inlineCallbacks
    def test_uclient_relays_over_dtls(self) -> Any:
        """coturn's turnutils_uclient -S over UDP to the TLS port: allocations over DTLS, no loss (it picks
        DTLS 1.0 or 1.2 at random per connection, hence dtls_min_version = 1.0)."""
        self.start("dtls_min_version = 1.0\n")
        uclient, peer = need_tool("turnutils_uclient"), need_tool("turnutils_peer")
        peer_port = free_port()
        ended = _Ended()
        process = reactor.spawnProcess(ended, peer, [peer, "-L", "127.0.0.1", "-p", str(peer_port)], env=None)

        def stop_peer() -> Any:
            try:
                process.signalProcess(signal.SIGKILL)
            except error.ProcessExitedAlready:
                pass
            return ended.ended

        self.addCleanup(stop_peer)
        out, err, code = yield utils.getProcessOutputAndValue(
            uclient, ["-S", "-u", "alice", "-w", "pw-alice", "-e", "127.0.0.1", "-r", str(peer_port), "-n", "10",
                      "-m", "1", "-l", "100", "-z", "5", "-p", str(self.tls_port), "127.0.0.1"], env={})
        text = out + err
        self.assertEqual(LOST.search(text).group(1), b"0", text[-3000:])  # type: ignore[union-attr]
        self.assertEqual(SENT.findall(text)[-1], (b"20", b"20"))
        engine = self.listener.driver.engine
        self.assertGreaterEqual(sum(n for (_, t), n in engine.counters.allocations_total.items() if t == "dtls"), 2)
        self.assertGreaterEqual(self.listener.counts.get("handshakes", 0), 2)

    @defer.inlineCallbacks
    def test_cookie_exchange_then_binding(self) -> Any:
        """DTLS 1.2: the first ClientHello gets a HelloVerifyRequest and no state; the second, with the
        cookie, a handshake; then a Binding request is answered inside the connection."""
        self.start()
        client = DtlsClient(self.tls_port)
        self.addCleanup(client.close)
        version = yield threads.deferToThread(client.handshake)
        self.assertEqual(version, "DTLSv1.2")
        # record type 22 (handshake), handshake type 3 (HelloVerifyRequest) at byte 13
        self.assertEqual((client.first_answer[0], client.first_answer[13]), (22, 3))
        self.assertEqual(self.listener.counts.get("cookie_sent"), 1)
        reply = yield threads.deferToThread(
            client.request, encode(Message(Method.BINDING, MessageClass.REQUEST, os.urandom(12), ())))
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
        self.assertEqual(reply.get(AttrType.XOR_MAPPED_ADDRESS), client.sock.getsockname())
        self.assertEqual(len(self.listener.sessions), 1)

    @defer.inlineCallbacks
    def test_a_handler_error_does_not_stop_the_listener(self) -> Any:
        """An unexpected error while handling one record is counted and logged (rate-limited); the
        connection and the listener go on."""
        self.start()
        client = DtlsClient(self.tls_port)
        self.addCleanup(client.close)
        yield threads.deferToThread(client.handshake)
        driver = self.listener.driver
        real = driver.handle_client

        def broken_once(*args: Any) -> Any:
            driver.handle_client = real
            raise RuntimeError("a bug")

        driver.handle_client = broken_once
        self.addCleanup(setattr, driver, "handle_client", real)
        binding = encode(Message(Method.BINDING, MessageClass.REQUEST, os.urandom(12), ()))
        client.conn.send(binding)
        client.flush()
        reply = yield threads.deferToThread(client.request, binding)
        self.assertEqual(reply.msg_class, MessageClass.SUCCESS)
        self.assertEqual(self.listener.counts.get("handler_error"), 1)
        self.flushLoggedErrors()

    def test_hello_flood_keeps_no_state(self) -> None:
        """ClientHellos from 200 addresses that never answer the cookie: 200 HelloVerifyRequests, no sessions."""
        self.start()
        hello = DtlsClient(self.tls_port)
        self.addCleanup(hello.close)
        try:
            hello.conn.do_handshake()
        except SSL.WantReadError:
            pass
        first = hello.conn.bio_read(65535)
        for _ in range(200):
            self.listener.datagram(first, ("192.0.2.1", 10000 + _))
        self.assertEqual(self.listener.sessions, {})
        self.assertEqual(self.listener.counts.get("cookie_sent"), 200)
        # the counts /metrics exports (turn_dtls_events)
        self.assertIs(self.listener.counts, self.listener.driver.engine.counters.dtls)

    @defer.inlineCallbacks
    def test_dtls_1_0_refused_by_default(self) -> Any:
        self.start()
        client = DtlsClient(self.tls_port, max_version=0xFEFF)
        self.addCleanup(client.close)
        with self.assertRaises((SSL.Error, OSError)):
            yield threads.deferToThread(client.handshake)
        self.assertEqual(self.listener.sessions, {})

    @defer.inlineCallbacks
    def test_a_reloaded_certificate_reaches_new_handshakes(self) -> Any:
        """The [tls] certificate is reloaded (SIGHUP or an ACME renewal): the next DTLS handshake shows the
        new one, as the TLS listeners do."""
        self.start()

        def subject(client: DtlsClient) -> str:
            client.handshake()
            return str(client.conn.get_peer_certificate().get_subject().CN)

        first = DtlsClient(self.tls_port)
        self.addCleanup(first.close)
        self.assertEqual((yield threads.deferToThread(subject, first)), "localhost")
        write_self_signed(["reloaded.example"], self.cert, self.key)
        self.dtls_service.store.reload()
        second = DtlsClient(self.tls_port)
        self.addCleanup(second.close)
        self.assertEqual((yield threads.deferToThread(subject, second)), "reloaded.example")

    def test_config_needs_tls_listen(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config("[turn]\ndtls = yes\n", "x.ini")
        self.assertIn("dtls", str(caught.exception))
