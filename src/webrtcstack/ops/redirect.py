"""The optional plain-HTTP listener that sends every request to HTTPS.

``[http] redirect_listen = 0.0.0.0:80`` answers each request with a 301 to the
same path on ``https://`` — at ``[http] public_url`` when that is an https
URL, else at the request's host name and the first ``[http] tls_listen``
port.  The one exception: ACME http-01 challenges
(``/.well-known/acme-challenge/<token>``, RFC 8555 §8.3) -- those of the
stack's own ACME orders (``[tls] acme = yes``), and, with ``[http]
acme_webroot``, files from that directory, so certbot's ``--webroot`` mode
can renew the certificate while the stack holds port 80.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from twisted.web import resource, server
from twisted.web.iweb import IRequest

from webrtcstack.config import StackConfig


ACME_PREFIX = b"/.well-known/acme-challenge/"
#: RFC 8555 §8.1: a token is base64url; anything else (a "..", a slash) is not one
_TOKEN = re.compile(rb"[A-Za-z0-9_-]{1,256}\Z")
#: a key authorization is far shorter; a bigger file is not one we serve
_MAX_CHALLENGE_BYTES = 4096


def https_location(config: StackConfig, host_header: str, path: bytes, tls_port: int | None = None) -> str:
    """Where a plain-HTTP request for ``path`` with this Host header should go.

    :param tls_port: the bound HTTPS port (default: the first ``[http] tls_listen`` port).
    """
    public = config.http.public_url
    if public.startswith("https://"):
        base = public
    else:
        host = host_header.strip() or "localhost"
        # Drop a port from the Host header ("name:80", "[::1]:80").
        if host.startswith("["):
            host = host[: host.find("]") + 1] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        port = tls_port or (config.http.tls_listen[0].port if config.http.tls_listen else 443)
        base = f"https://{host}" + ("" if port == 443 else f":{port}")
    target = path.decode("latin-1") if path else "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/" + target.lstrip("/")
    return base + target


class RedirectResource(resource.Resource):
    """Every method, every path: 301 to the https URL (308 keeps POST a POST)."""

    isLeaf = True

    def __init__(self, config: StackConfig, tls_port: Callable[[], int | None] | None = None,
                 board: Any = None) -> None:
        super().__init__()
        self.config = config
        self.tls_port = tls_port
        self.board = board

    def render(self, request: IRequest) -> bytes:
        if (self.config.http.acme_webroot or self.board is not None) and request.path.startswith(ACME_PREFIX):
            return self._challenge(request)
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        location = https_location(self.config, host, request.uri, self.tls_port() if self.tls_port else None)
        request.setResponseCode(301 if request.method in (b"GET", b"HEAD") else 308)
        request.setHeader(b"location", location.encode("latin-1"))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return f"moved to {location}\n".encode("latin-1")

    def _challenge(self, request: IRequest) -> bytes:
        """The answer to an ACME http-01 challenge: ours, or a file from ``[http] acme_webroot``; else 404."""
        token = request.path[len(ACME_PREFIX):]
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            return b"method not allowed\n"
        if not _TOKEN.match(token):
            request.setResponseCode(404)
            return b"no such challenge\n"
        if self.board is not None:
            answer = self.board.answer(token.decode("ascii"))
            if answer is not None:
                return answer.encode("ascii")
        if self.config.http.acme_webroot:
            path = os.path.join(self.config.http.acme_webroot, ".well-known", "acme-challenge", token.decode("ascii"))
            try:
                with open(path, "rb") as f:
                    body = f.read(_MAX_CHALLENGE_BYTES + 1)
            except OSError:
                body = None
            if body is not None and len(body) <= _MAX_CHALLENGE_BYTES:
                return body
        request.setResponseCode(404)
        return b"no such challenge\n"


def build_redirect_site(config: StackConfig, tls_port: Callable[[], int | None] | None = None,
                        board: Any = None) -> server.Site:
    """The Site for ``[http] redirect_listen``.

    :param tls_port: returns the HTTPS port actually bound (it differs from the config with port 0).
    :param board: the :class:`webrtcstack.certs.acme_flow.Http01Board` of the stack's ACME orders.
    """
    site = server.Site(RedirectResource(config, tls_port, board))
    site.noisy = False
    return site
