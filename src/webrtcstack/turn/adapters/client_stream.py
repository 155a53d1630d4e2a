# -*- test-case-name: tests.integration.test_turn_sockets -*-
"""TURN (and STUN) over a byte stream: TCP now, TLS by wrapping the factory.

The protocol only needs an ``ITransport`` (``write``, ``getPeer``,
``getHost``, ``loseConnection``), so TLS is ``TLSMemoryBIOFactory`` around
:class:`TurnStreamFactory` with ``transport=Transport.TLS``; nothing here
changes.  Frames come from :class:`~webrtcstack.turn.framing.StreamFramer`;
a framing error closes the connection; closing the connection ends its
allocation (RFC 8656 §7: the allocation lives as long as the connection).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from webrtcstack.stun.attributes import normalize_host
from webrtcstack.turn.five_tuple import FiveTuple, Transport
from webrtcstack.turn.framing import FramingError, StreamFramer

__all__ = ["TurnStreamProtocol", "TurnStreamFactory"]

log = Logger()


class TurnStreamProtocol(Protocol):
    """One client connection."""

    factory: TurnStreamFactory

    def __init__(self) -> None:
        self.five_tuple: FiveTuple | None = None
        self.framer: StreamFramer | None = None
        self._counted = False

    def connectionMade(self) -> None:
        factory = self.factory
        driver = factory.driver
        if driver.stream_connections >= factory.max_connections:
            factory.refused += 1
            self.transport.abortConnection()
            return
        driver.stream_connections += 1
        self._counted = True
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self.five_tuple = FiveTuple(factory.transport_kind, (normalize_host(peer.host), peer.port),
                                    (normalize_host(host.host), host.port))
        self.framer = StreamFramer(factory.max_frame_bytes)

    def dataReceived(self, data: bytes) -> None:
        if self.framer is None or self.five_tuple is None:
            return
        try:
            frames = self.framer.feed(data)
        except FramingError:
            self.factory.engine.counters.drop("framing")
            self.framer = None
            self.transport.abortConnection()
            return
        driver = self.factory.driver
        now = driver.reactor.seconds()
        write = self.transport.write
        for frame in frames:
            driver.handle_client(self.five_tuple, frame, write, now)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._counted:
            self.factory.driver.stream_connections -= 1
            self._counted = False
        if self.five_tuple is not None:
            self.factory.driver.connection_lost(self.five_tuple)
        self.framer = None


class TurnStreamFactory(Factory):
    """Builds :class:`TurnStreamProtocol` for one listener.

    :param transport_kind: ``Transport.TCP`` or ``Transport.TLS``.
    """

    protocol = TurnStreamProtocol
    noisy = False

    def __init__(self, driver: Any, *, transport_kind: Transport = Transport.TCP, max_connections: int = 10000,
                 max_frame_bytes: int = 65540) -> None:
        self.driver = driver
        self.engine = driver.engine
        self.transport_kind = transport_kind
        self.max_connections = max_connections
        self.max_frame_bytes = max_frame_bytes
        self.refused = 0
