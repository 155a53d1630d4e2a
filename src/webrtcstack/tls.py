"""TLS for HTTPS, WSS and TURN over TLS: server contexts that reload, and test certificates.

:class:`CertificateStore` reads ``[tls] certificate`` (the full chain, PEM)
and ``private_key`` and builds one :class:`OpenSSL.SSL.Context` per ALPN
offer.  :class:`TlsServerOptions` hands Twisted's
:class:`~twisted.protocols.tls.TLSMemoryBIOFactory` a new
:class:`OpenSSL.SSL.Connection` per accepted connection from the store's
*current* context, so :meth:`CertificateStore.reload` swaps the certificate
for new connections while connections already up keep the context they were
made with (OpenSSL reference-counts it).

:func:`self_signed_certificate` makes the certificate and key that
``webrtcstack gencert`` writes.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from typing import Any

import attr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

#: ALPN protocol IDs (RFC 7443 registers ``stun.turn`` for TURN over TLS).
ALPN_HTTP = b"http/1.1"
ALPN_TURN = b"stun.turn"

#: TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are OpenSSL's defaults.
CIPHERS_TLS12 = b"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!SHA1"


class TlsError(Exception):
    """A certificate or key cannot be loaded; the message says which file and why."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class CertificateInfo:
    """What the loaded certificate says (for logs, ``/status`` and metrics)."""

    subject: str
    names: tuple[str, ...]
    not_after: float  # seconds since the epoch
    fingerprint_sha256: str
    not_before: float = 0.0  # seconds since the epoch
    issuer: str = ""

    @property
    def self_signed(self) -> bool:
        """Whether the certificate names itself as its issuer (a placeholder or ``gencert``'s)."""
        return self.issuer == self.subject


def describe_certificate(pem: bytes) -> CertificateInfo:
    """The leaf's subject, DNS/IP names, expiry and SHA-256 fingerprint."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName)) + tuple(
            str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        names = ()
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        names=names,
        not_after=cert.not_valid_after_utc.timestamp(),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(":"),
        not_before=cert.not_valid_before_utc.timestamp(),
        issuer=cert.issuer.rfc4514_string(),
    )


def certificate_covers(names: Iterable[str], host: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``host`` (RFC 6125: one ``*.`` label at the left)."""
    host = host.lower().rstrip(".").strip("[]")
    for name in names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def make_context(certificate_path: str, private_key_path: str, alpn: Sequence[bytes]) -> SSL.Context:
    """A server context: TLS 1.2 minimum, forward-secret AEAD suites, and ALPN.

    The ALPN callback picks the first of ``alpn`` the client offers; when the
    client offers none of them, the handshake goes on without ALPN (the
    one-port listener then sniffs the first bytes).

    :raises TlsError: when a file is missing or the key does not match.
    """
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET)
    ctx.set_cipher_list(CIPHERS_TLS12)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    for key, path in (("certificate", certificate_path), ("private_key", private_key_path)):
        # OpenSSL's own text for a missing file is empty; say what the OS says.
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise TlsError(f"[tls] {key} {path}: cannot read the file: {e.strerror}") from None
    try:
        ctx.use_certificate_chain_file(certificate_path.encode())
    except SSL.Error as e:
        raise TlsError(f"[tls] certificate {certificate_path}: cannot load a PEM certificate chain ({_reason(e)})") from None
    try:
        ctx.use_privatekey_file(private_key_path.encode())
    except SSL.Error as e:
        reason = _reason(e)
        if "mismatch" in reason:
            raise TlsError(f"[tls] private_key {private_key_path} does not match the certificate {certificate_path}") from None
        raise TlsError(f"[tls] private_key {private_key_path}: cannot load a PEM private key ({reason})") from None
    try:
        ctx.check_privatekey()
    except SSL.Error:
        raise TlsError(f"[tls] private_key {private_key_path} does not match the certificate {certificate_path}") from None
    offered = tuple(alpn)
    if offered:
        def select(conn: SSL.Connection, client_protocols: list[bytes]) -> Any:
            for proto in offered:
                if proto in client_protocols:
                    return proto
            return SSL.NO_OVERLAPPING_PROTOCOLS

        ctx.set_alpn_select_callback(select)
    return ctx


def _reason(error: SSL.Error) -> str:
    """OpenSSL's reason text from an error (``no such file`` and the like)."""
    try:
        return "; ".join(str(item[2]) for item in error.args[0]) or str(error)
    except (IndexError, TypeError):
        return str(error)


class CertificateStore:
    """The certificate and key in force, and one server context per ALPN offer.

    :param certificate_path: ``[tls] certificate``.
    :param private_key_path: ``[tls] private_key``.
    """

    def __init__(self, certificate_path: str, private_key_path: str) -> None:
        self.certificate_path = certificate_path
        self.private_key_path = private_key_path
        self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}
        self._dtls: tuple[tuple[int, bool], SSL.Context] | None = None
        self.info: CertificateInfo | None = None
        self.generation = 0

    def load(self) -> CertificateInfo:
        """Read both files and rebuild every context; on any error keep the old ones.

        :raises TlsError: when the new files cannot be used.
        """
        offers = list(self._contexts) or [()]
        fresh = {offer: make_context(self.certificate_path, self.private_key_path, offer) for offer in offers}
        try:
            with open(self.certificate_path, "rb") as f:
                info = describe_certificate(f.read())
        except (OSError, ValueError) as e:
            raise TlsError(f"[tls] certificate {self.certificate_path}: {e}") from None
        self._contexts.update(fresh)
        self.info = info
        self.generation += 1
        return info

    def reload(self, certificate_path: str | None = None, private_key_path: str | None = None) -> CertificateInfo:
        """Load (possibly other) files; the old certificate stays when they fail.

        :raises TlsError: when the new files cannot be used (nothing changed).
        """
        old = (self.certificate_path, self.private_key_path)
        if certificate_path is not None:
            self.certificate_path = certificate_path
        if private_key_path is not None:
            self.private_key_path = private_key_path
        try:
            return self.load()
        except TlsError:
            self.certificate_path, self.private_key_path = old
            raise

    def dtls_context(self, cookie: Any, cookie_ok: Any, legacy: bool = False) -> SSL.Context:
        """The current DTLS server context (``[turn] dtls``): the same certificate and key, stateless
        cookies from ``cookie`` / ``cookie_ok``; rebuilt after each load.

        DTLS 1.2 with the TLS listeners' suites; with ``legacy`` (``dtls_min_version = 1.0``) DTLS 1.0
        too, which needs ECDHE with AES-CBC-SHA and OpenSSL's security level 0 (SHA-1 signatures).
        """
        if self._dtls is None or self._dtls[0] != (self.generation, legacy):
            ctx = SSL.Context(SSL.DTLS_SERVER_METHOD)
            ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET)
            if legacy:
                ctx.set_cipher_list(b"ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES+SHA1:!aNULL:@SECLEVEL=0")
            else:
                ctx.set_min_proto_version(0xFEFD)  # DTLS 1.2 (pyOpenSSL names no DTLS versions)
                ctx.set_cipher_list(CIPHERS_TLS12)
            try:
                ctx.use_certificate_chain_file(self.certificate_path.encode())
                ctx.use_privatekey_file(self.private_key_path.encode())
            except SSL.Error as e:
                raise TlsError(f"[tls] certificate {self.certificate_path}: {_reason(e)}") from None
            ctx.set_cookie_generate_callback(cookie)
            ctx.set_cookie_verify_callback(cookie_ok)
            self._dtls = ((self.generation, legacy), ctx)
        return self._dtls[1]

    def context(self, alpn: Sequence[bytes]) -> SSL.Context:
        """The current context offering ``alpn`` (built on first use)."""
        key = tuple(alpn)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = make_context(self.certificate_path, self.private_key_path, key)
        return ctx


@implementer(IOpenSSLServerConnectionCreator)
class TlsServerOptions:
    """What TLSMemoryBIOFactory needs: a fresh server Connection from the current context.

    :param alpn: the protocols this listener offers, preferred first.
    """

    def __init__(self, store: CertificateStore, alpn: Sequence[bytes]) -> None:
        self.store = store
        self.alpn = tuple(alpn)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self.store.context(self.alpn), None)


def tls_factory(store: CertificateStore, alpn: Sequence[bytes], wrapped: Any) -> Any:
    """``wrapped`` (a protocol factory) behind TLS with ``store``'s certificate."""
    from twisted.protocols.tls import TLSMemoryBIOFactory

    return TLSMemoryBIOFactory(TlsServerOptions(store, alpn), False, wrapped)


# --------------------------------------------------------------------------
# Self-signed certificates (webrtcstack gencert)
# --------------------------------------------------------------------------


def self_signed_certificate(hosts: Iterable[str], *, days: int = 365,
                            now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A self-signed ECDSA P-256 certificate for ``hosts`` and its key, both PEM.

    Each host becomes a subjectAltName (an IP address entry when it parses as
    one); the first is also the common name.  For tests and first setup only:
    browsers and TURN clients will not trust it unless told to.
    """
    names = list(hosts)
    if not names:
        raise ValueError("at least one host name is needed")
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.datetime.now(datetime.timezone.utc)) - datetime.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


def write_self_signed(hosts: Iterable[str], certificate_path: str, private_key_path: str, *, days: int = 365) -> CertificateInfo:
    """Write a new self-signed certificate and key (the key readable by its owner only)."""
    cert_pem, key_pem = self_signed_certificate(hosts, days=days)
    fd = os.open(private_key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    with open(certificate_path, "wb") as f:
        f.write(cert_pem)
    return describe_certificate(cert_pem)
