"""Server TLS contexts: TLS 1.2 minimum, ALPN choice, certificate reload, self-signed certificates."""

from __future__ import annotations

import os

from cryptography import x509
from OpenSSL import SSL
from twisted.trial import unittest

from tests.ops.support import make_cert
from webrtcstack.tls import (ALPN_HTTP, ALPN_TURN, CertificateStore, TlsError, describe_certificate, make_context,
                             self_signed_certificate)


def handshake(server: SSL.Connection, client: SSL.Connection) -> None:
    """Run a TLS handshake between two in-memory connections (raises SSL.Error on failure)."""
    server.set_accept_state()
    client.set_connect_state()
    done = {id(server): False, id(client): False}
    for _ in range(20):
        for conn, other in ((client, server), (server, client)):
            if not done[id(conn)]:
                try:
                    conn.do_handshake()
                    done[id(conn)] = True
                except SSL.WantReadError:
                    pass
            try:
                other.bio_write(conn.bio_read(65536))
            except SSL.WantReadError:
                pass
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def client(max_version: int | None = None, alpn: list[bytes] | None = None) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if max_version is not None:
        ctx.set_min_proto_version(SSL.TLS1_VERSION)
        ctx.set_max_proto_version(max_version)
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    if alpn:
        ctx.set_alpn_protos(alpn)
    return SSL.Connection(ctx, None)


class ContextTests(unittest.TestCase):
    def setUp(self) -> None:
        self.cert, self.key, self.pem = make_cert(self)

    def test_tls12_and_13_accepted(self) -> None:
        """Clients capped at TLS 1.2 and at TLS 1.3 both complete the handshake."""
        for version, name in ((SSL.TLS1_2_VERSION, "TLSv1.2"), (SSL.TLS1_3_VERSION, "TLSv1.3")):
            server = SSL.Connection(make_context(self.cert, self.key, ()), None)
            c = client(version)
            handshake(server, c)
            self.assertEqual(c.get_protocol_version_name(), name)

    def test_tls11_refused(self) -> None:
        """A client that speaks at most TLS 1.1 fails the handshake."""
        server = SSL.Connection(make_context(self.cert, self.key, ()), None)
        self.assertRaises(SSL.Error, handshake, server, client(SSL.TLS1_1_VERSION))

    def test_alpn_picks_the_listeners_protocol(self) -> None:
        """The server picks the first of its ALPN protocols the client offers, and none when nothing overlaps."""
        ctx = make_context(self.cert, self.key, (ALPN_HTTP, ALPN_TURN))
        for offered, chosen in (([b"h2", ALPN_HTTP], ALPN_HTTP), ([ALPN_TURN], ALPN_TURN), ([b"h2"], b"")):
            server, c = SSL.Connection(ctx, None), client(alpn=offered)
            handshake(server, c)
            self.assertEqual(c.get_alpn_proto_negotiated(), chosen)

    def test_mismatched_key_is_an_error_naming_the_files(self) -> None:
        """A key that does not belong to the certificate is refused with both file names."""
        _, other_key, _ = make_cert(self)
        e = self.assertRaises(TlsError, make_context, self.cert, other_key, ())
        self.assertIn(other_key, str(e))
        self.assertIn("does not match", str(e))

    def test_missing_file_is_an_error(self) -> None:
        """A missing certificate file gives an error naming [tls] certificate and the path."""
        e = self.assertRaises(TlsError, make_context, "/nonexistent/cert.pem", self.key, ())
        self.assertIn("[tls] certificate /nonexistent/cert.pem", str(e))
        self.assertIn("cannot read the file: No such file or directory", str(e))
        e = self.assertRaises(TlsError, make_context, self.cert, "/nonexistent/key.pem", ())
        self.assertIn("[tls] private_key /nonexistent/key.pem: cannot read the file", str(e))


class StoreTests(unittest.TestCase):
    def test_reload_swaps_the_certificate_for_new_connections(self) -> None:
        """After reload a new connection gets the new certificate; one made before keeps the old."""
        cert, key, pem = make_cert(self)
        store = CertificateStore(cert, key)
        store.load()
        before = SSL.Connection(store.context((ALPN_HTTP,)), None)
        cert2, key2, pem2 = make_cert(self, ("example.org",))
        info = store.reload(cert2, key2)
        self.assertEqual(info.names, ("example.org",))
        after = SSL.Connection(store.context((ALPN_HTTP,)), None)
        self.assertEqual(after.get_certificate().to_cryptography(), x509.load_pem_x509_certificate(pem2))
        self.assertEqual(before.get_certificate().to_cryptography(), x509.load_pem_x509_certificate(pem))

    def test_bad_reload_keeps_the_old_certificate(self) -> None:
        """A reload with a broken file raises and leaves the files, info and contexts as they were."""
        cert, key, _ = make_cert(self)
        store = CertificateStore(cert, key)
        info = store.load()
        ctx = store.context(())
        broken = os.path.abspath(self.mktemp())
        with open(broken, "w") as f:
            f.write("not a certificate")
        self.assertRaises(TlsError, store.reload, broken, key)
        self.assertEqual((store.certificate_path, store.info), (cert, info))
        self.assertIs(store.context(()), ctx)


class SelfSignedTests(unittest.TestCase):
    def test_names_become_dns_and_ip_entries(self) -> None:
        """Each host becomes a subjectAltName, IP addresses as IP entries, the first also the CN."""
        cert_pem, key_pem = self_signed_certificate(["turn.example.org", "192.0.2.1", "2001:db8::1"])
        info = describe_certificate(cert_pem)
        self.assertEqual(info.subject, "CN=turn.example.org")
        self.assertEqual(info.names, ("turn.example.org", "192.0.2.1", "2001:db8::1"))
        self.assertIn(b"PRIVATE KEY", key_pem)

    def test_written_key_is_private(self) -> None:
        """The key file is written with mode 0600."""
        cert, key, _ = make_cert(self)
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
