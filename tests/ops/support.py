"""Test helpers for TLS and the operations side: certificates, TLS clients, an in-process stack."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.ssl import Certificate, optionsForClientTLS

from webrtcstack.config import StackConfig, parse_config
from webrtcstack.ops.systemd import SystemdNotifier
from webrtcstack.tls import write_self_signed

TIMEOUT = 10.0


def make_cert(testcase: Any, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> tuple[str, str, bytes]:
    """A fresh self-signed certificate in the test's temp dir: (cert path, key path, cert PEM)."""
    base = os.path.abspath(testcase.mktemp())
    os.makedirs(base)
    cert, key = os.path.join(base, "cert.pem"), os.path.join(base, "key.pem")
    write_self_signed(hosts, cert, key, days=2)
    with open(cert, "rb") as f:
        return cert, key, f.read()


def client_tls(pem: bytes, hostname: str = "localhost", alpn: list[bytes] | None = None) -> Any:
    """Client TLS options trusting only ``pem`` and checking ``hostname`` (service_identity)."""
    return optionsForClientTLS(hostname, trustRoot=Certificate.loadPEM(pem),
                               acceptableProtocols=alpn)


def stack_config(text: str, filename: str = "test.ini") -> StackConfig:
    """A config for in-process tests; metrics off unless the text turns it on."""
    if "[metrics]" not in text:
        text += "\n[metrics]\nenabled = no\n"
    return parse_config(text, filename)


def quiet_notifier() -> SystemdNotifier:
    """A notifier that never talks to a real systemd."""
    return SystemdNotifier(reactor, environ={})


def bound(top: Any, what: str) -> int:
    """The port the listener named ``what`` bound (after start)."""
    for svc in top.runtime.listeners:
        if getattr(svc, "what", None) == what:
            return int(svc.bound_port())
    raise KeyError(what)


class Collect(protocol.Protocol):
    """A client protocol that keeps what it receives and fires when the connection ends."""

    def __init__(self, send: bytes = b"") -> None:
        self.send = send
        self.data = b""
        self.received: defer.DeferredQueue[bytes] = defer.DeferredQueue()
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self.connected_d: defer.Deferred[Any] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.send:
            self.transport.write(self.send)
        self.connected_d.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self.received.put(data)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(self.data)

    async def read_until(self, marker: bytes, timeout: float = TIMEOUT) -> bytes:
        """Wait until the data seen so far contains ``marker``; return it all."""
        while marker not in self.data:
            await self.received.get().addTimeout(timeout, reactor)
        return self.data


async def tls_connect(port: int, options: Any, send: bytes = b"", host: str = "127.0.0.1") -> Collect:
    """Open a TLS connection; the handshake finishes with the first exchange."""
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS

    ep = (TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint)(reactor, host, port, timeout=5)
    proto = Collect(send)
    await wrapClientTLS(options, ep).connect(protocol.Factory.forProtocol(lambda: proto)).addTimeout(TIMEOUT, reactor)
    return proto


def http_request(path: str = "/", host: str = "localhost", close: bool = True, method: str = "GET") -> bytes:
    """A minimal HTTP/1.1 request (GET by default; no body)."""
    body = "Content-Length: 0\r\n" if method == "POST" else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{body}" + ("Connection: close\r\n" if close else "") + "\r\n").encode()


async def read_http_response(proto: Collect, start: int = 0, timeout: float = TIMEOUT) -> tuple[int, dict[str, str], bytes, int]:
    """Parse one HTTP/1.1 response from ``proto.data[start:]``: (code, headers, body, end offset)."""
    await proto.read_until(b"\r\n\r\n", timeout)
    while b"\r\n\r\n" not in proto.data[start:]:
        await proto.received.get().addTimeout(timeout, reactor)
    head_end = proto.data.index(b"\r\n\r\n", start) + 4
    lines = proto.data[start:head_end].decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    length = int(headers.get("content-length", "0"))
    while len(proto.data) < head_end + length:
        await proto.received.get().addTimeout(timeout, reactor)
    return code, headers, proto.data[head_end:head_end + length], head_end + length
