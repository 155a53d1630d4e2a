# -*- test-case-name: tests.turn.test_five_tuple -*-
"""The 5-tuple that names an allocation (RFC 8656 §2: client, server, transport).

A :class:`FiveTuple` is a plain ``NamedTuple``, so it hashes and compares like
the tuple ``(transport, client, server)``.  The UDP adapter builds that plain
tuple per datagram for the fast-path lookups without paying for the class.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["Address", "FiveTuple", "Transport", "format_address"]

#: ``(host, port)``; the host is an IP address in the form the socket API gives.
Address = tuple[str, int]


class Transport(enum.IntEnum):
    """The client's transport to the server (the relay side is always UDP)."""

    UDP = 17
    TCP = 6
    TLS = 56
    #: TURN over DTLS (RFC 7350): datagrams, so no ChannelData padding
    DTLS = 57

    @property
    def is_stream(self) -> bool:
        """True for byte-stream transports (ChannelData is padded on these)."""
        return self is Transport.TCP or self is Transport.TLS


class FiveTuple(NamedTuple):
    """Client transport address, server transport address and transport protocol."""

    transport: Transport
    client: Address
    server: Address

    def __str__(self) -> str:
        return f"{self.transport.name} {format_address(self.client)}->{format_address(self.server)}"


def format_address(address: Address) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
