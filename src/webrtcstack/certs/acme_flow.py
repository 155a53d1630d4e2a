"""One ACME order, start to finish, with the PyPI ``acme`` library (certbot's).

Every call here blocks (HTTP requests to the ACME server): the stack runs
:func:`obtain_certificate` in a thread of its own, never in the reactor.
The only thing shared with the reactor is the :class:`Http01Board`, which
the redirect listener reads to answer the server's http-01 requests
(RFC 8555 §8.3) while the order waits for validation.

Files, under ``<state dir>/acme/``:

- ``account-<directory hash>.key``: the account key for one ACME directory
  (RSA 2048, PEM, mode 0600); made on first use, then kept, so the account
  survives restarts (asking ``newAccount`` with a known key just finds it).
- ``certificate.pem``: the full chain; ``private_key.pem`` (mode 0600): its
  key, new for each certificate; ``certificate.json``: which directory
  issued it and for which names.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import threading
from collections.abc import Iterable
from typing import Any

import attr
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["AcmeFailure", "Http01Board", "AcmeFiles", "obtain_certificate"]

USER_AGENT = "webrtcstack-acme"
#: seconds for one HTTP request to the ACME server
REQUEST_TIMEOUT_S = 20
#: seconds for a whole order (validation and issuance included)
ORDER_TIMEOUT_S = 120


class AcmeFailure(Exception):
    """The order did not give a certificate; the message says why in one line."""


class Http01Board:
    """The http-01 answers being asked for now: token → key authorization.

    Written by the ACME thread, read by the reactor's redirect listener (a
    lock keeps both sides simple).
    """

    def __init__(self) -> None:
        self._answers: dict[str, str] = {}
        self._lock = threading.Lock()

    def publish(self, token: str, key_authorization: str) -> None:
        with self._lock:
            self._answers[token] = key_authorization

    def withdraw(self, token: str) -> None:
        with self._lock:
            self._answers.pop(token, None)

    def answer(self, token: str) -> str | None:
        """The key authorization for ``token``, or None when no order asks for it."""
        with self._lock:
            return self._answers.get(token)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AcmeFiles:
    """Where one stack keeps its ACME account key and certificate."""

    directory: str  # <state dir>/acme

    @classmethod
    def under(cls, state_dir: str) -> AcmeFiles:
        return cls(os.path.join(state_dir, "acme"))

    @property
    def certificate(self) -> str:
        return os.path.join(self.directory, "certificate.pem")

    @property
    def private_key(self) -> str:
        return os.path.join(self.directory, "private_key.pem")

    @property
    def meta(self) -> str:
        return os.path.join(self.directory, "certificate.json")

    def account_key(self, directory_url: str) -> str:
        tag = hashlib.sha256(directory_url.encode()).hexdigest()[:12]
        return os.path.join(self.directory, f"account-{tag}.key")

    def read_meta(self) -> dict[str, Any]:
        """What ``certificate.json`` says ({} when there is none or it is unreadable)."""
        try:
            with open(self.meta, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, fullchain_pem: bytes, key_pem: bytes, meta: dict[str, Any]) -> None:
        """Replace the certificate, its key and the meta file (each one atomically)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        _write_atomic(self.private_key, key_pem, 0o600)
        _write_atomic(self.certificate, fullchain_pem, 0o644)
        _write_atomic(self.meta, json.dumps(meta, sort_keys=True).encode() + b"\n", 0o644)


def _write_atomic(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _account_key(path: str) -> Any:
    """The account key kept at ``path`` (a josepy JWK), made on first use."""
    import josepy

    try:
        with open(path, "rb") as f:
            pem = f.read()
    except FileNotFoundError:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        _write_atomic(path, pem, 0o600)
    return josepy.JWKRSA(key=serialization.load_pem_private_key(pem, password=None))


def _split_names(names: Iterable[str]) -> tuple[list[str], list[Any]]:
    dns: list[str] = []
    ips: list[Any] = []
    for name in names:
        try:
            ips.append(ipaddress.ip_address(name.strip("[]")))
        except ValueError:
            dns.append(name)
    return dns, ips


def _why(error: BaseException) -> str:
    """One line for a failed order: the ACME problem's detail, or the network error."""
    from acme import errors, messages

    if isinstance(error, errors.ValidationError):
        details = []
        for authzr in error.failed_authzrs:
            for challb in authzr.body.challenges:
                if challb.error is not None:
                    details.append(f"{authzr.body.identifier.value}: {challb.error.detail or challb.error.typ}")
        return "validation failed: " + ("; ".join(details) or "no detail from the server")
    if isinstance(error, messages.Error):
        return f"the ACME server refused: {error.detail or error.typ}"
    if isinstance(error, errors.TimeoutError):
        return "the ACME server did not finish the order in time"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{type(error).__name__}: {text}"[:300]


def obtain_certificate(directory_url: str, names: Iterable[str], files: AcmeFiles, board: Http01Board, *,
                       email: str = "", ca_file: str = "", order_timeout_s: float = ORDER_TIMEOUT_S) -> tuple[bytes, bytes]:
    """Order a certificate for ``names`` and answer its http-01 challenges on ``board``.

    Blocks for the whole order.  Registers (or finds) the account for the
    kept key, agreeing to the directory's terms of service as a person
    running certbot with ``--agree-tos`` would.

    :param ca_file: a PEM bundle to trust for the ACME server's own HTTPS (a private
        ACME server); empty: the system's trust store.
    :returns: the full chain and the new private key, both PEM.
    :raises AcmeFailure: with a one-line reason.
    """
    from acme import challenges, client, crypto_util, errors, messages

    names = list(names)
    try:
        account_key = _account_key(files.account_key(directory_url))
        net = client.ClientNetwork(account_key, verify_ssl=ca_file or True, user_agent=USER_AGENT,
                                   timeout=REQUEST_TIMEOUT_S)
        directory = client.ClientV2.get_directory(directory_url, net)
        acme = client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(email=email or None, terms_of_service_agreed=True)
        try:
            net.account = acme.new_account(registration)
        except errors.ConflictError as known:  # RFC 8555 §7.3.1: the key already has an account
            net.account = messages.RegistrationResource(uri=known.location, body=messages.Registration())

        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        dns, ips = _split_names(names)
        csr = crypto_util.make_csr(key_pem, dns or None, ipaddrs=ips or None)
        order = acme.new_order(csr)
        published: list[str] = []
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue  # validated recently for this account (the server may reuse it)
                http01 = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
                if http01 is None:
                    raise AcmeFailure(f"the ACME server offers no http-01 challenge for {authz.body.identifier.value}")
                response, validation = http01.response_and_validation(account_key)
                token = http01.chall.encode("token")
                board.publish(token, validation)
                published.append(token)
                acme.answer_challenge(http01, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=order_timeout_s)
            order = acme.poll_and_finalize(order, deadline)
        finally:
            for token in published:
                board.withdraw(token)
        if not order.fullchain_pem:
            raise AcmeFailure("the ACME server gave no certificate")
        return order.fullchain_pem.encode(), key_pem
    except AcmeFailure:
        raise
    except Exception as e:  # the acme library, requests and josepy raise many kinds: report, do not crash
        raise AcmeFailure(_why(e)) from e
