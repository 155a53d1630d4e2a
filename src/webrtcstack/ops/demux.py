"""One TLS port for TURN and HTTPS/WSS: choose by ALPN, else by the first bytes.

Strict firewalls often let only TCP 443 out.  A browser's ``turns:host:443``
and an ``https://host/`` page can share that port: the TLS listener offers
ALPN ``http/1.1`` and ``stun.turn`` (RFC 7443), and when the client sends no
ALPN (most TURN clients, browsers included), the first application byte
decides: a STUN message starts with the two zero bits of its type followed
by the high bits of a small method number (first byte 0x00 or 0x01), an HTTP
request with an upper-case method letter.

The listener prefers ``stun.turn`` when a client offers both (coturn's
client offers ``http/1.1`` first; browsers fetching pages never offer
``stun.turn``), and a first byte that can only start a STUN message wins
over a negotiated ``http/1.1``.

The choice is made once per connection.  After it, the chosen protocol is
put in the TLS transport's ``wrappedProtocol`` slot (the same move Autobahn
makes when it upgrades an HTTP request to a WebSocket), so relayed data goes
straight from TLS to TURN without a forwarding call per packet.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from webrtcstack.tls import ALPN_HTTP, ALPN_TURN

log = Logger()

TURN = "turn"
HTTP = "http"

#: How long a client may stay silent after connecting before it is dropped.
FIRST_BYTES_TIMEOUT_S = 30.0


def classify(alpn: bytes | None, first: bytes) -> str | None:
    """Which service a connection is for: ``"turn"``, ``"http"`` or None (close it).

    :param alpn: the negotiated ALPN protocol, if any.
    :param first: the first application bytes (at least one).
    """
    if alpn == ALPN_TURN:
        return TURN
    if not first:
        return None
    b = first[0]
    if alpn == ALPN_HTTP and b not in (0x00, 0x01):
        # coturn's client offers http/1.1 before stun.turn; a request that can only be STUN is TURN anyway.
        return HTTP
    if b in (0x00, 0x01):
        return TURN  # STUN: two zero bits, then a method that fits in 12 bits (all known ones are < 0x100)
    if 0x41 <= b <= 0x5A:
        return HTTP  # GET, POST, OPTIONS, ...
    return None


class DemuxProtocol(Protocol):
    """Waits for the first bytes, then hands the connection to TURN or HTTP."""

    def __init__(self, factory: DemuxFactory, addr: IAddress) -> None:
        self.factory = factory
        self.addr = addr
        self._timer: Any = None

    def connectionMade(self) -> None:
        self._timer = self.factory.clock.callLater(self.factory.timeout_s, self._silent)

    def _silent(self) -> None:
        self._timer = None
        self.factory.counts["timeout"] = self.factory.counts.get("timeout", 0) + 1
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        alpn = getattr(self.transport, "negotiatedProtocol", None)
        kind = classify(alpn, data)
        inner_factory = {TURN: self.factory.turn_factory, HTTP: self.factory.http_factory}.get(kind or "")
        inner = inner_factory.buildProtocol(self.addr) if inner_factory is not None else None
        self.factory.counts[kind or "unknown"] = self.factory.counts.get(kind or "unknown", 0) + 1
        if inner is None:
            self.transport.loseConnection()
            return
        transport = self.transport
        # From now on TLS delivers straight to the chosen protocol.
        transport.wrappedProtocol = inner
        inner.makeConnection(transport)
        inner.dataReceived(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class DemuxFactory(Factory):
    """Builds a :class:`DemuxProtocol` per connection; wrap it in TLS.

    :param turn_factory: the TURN stream factory (it sees the TLS transport).
    :param http_factory: the HTTP site.
    :param clock: for the first-bytes timeout.
    """

    def __init__(self, turn_factory: Any, http_factory: Any, clock: Any,
                 timeout_s: float = FIRST_BYTES_TIMEOUT_S) -> None:
        self.turn_factory = turn_factory
        self.http_factory = http_factory
        self.clock = clock
        self.timeout_s = timeout_s
        #: connections handed to each side ("turn", "http", "unknown", "timeout").
        self.counts: dict[str, int] = {}

    def buildProtocol(self, addr: IAddress) -> DemuxProtocol:
        return DemuxProtocol(self, addr)

    def doStart(self) -> None:
        # The inner factories are started by their own listeners (if any) or here.
        for f in (self.turn_factory, self.http_factory):
            if f is not None:
                f.doStart()
        Factory.doStart(self)

    def doStop(self) -> None:
        for f in (self.turn_factory, self.http_factory):
            if f is not None:
                f.doStop()
        Factory.doStop(self)
