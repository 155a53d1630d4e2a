# -*- test-case-name: tests.stun.test_discovery -*-
"""NAT behaviour discovery (RFC 5780 §6), sans-IO: which address answers a Binding, and to where.

A server doing discovery listens on two IP addresses and two ports of one
family: four UDP addresses ``(ip_i, port_j)``.  Each Binding answer carries

* RESPONSE-ORIGIN: the address the answer is sent from (§7.3), and
* OTHER-ADDRESS: the address that differs from the one the request reached in
  both IP and port (§7.4),

and a request's CHANGE-REQUEST (§7.2: change IP 0x04, change port 0x02)
chooses the sending address among the four; RESPONSE-PORT (§7.5) names the
client port the answer goes to.  The answer's destination IP is always the
request's source IP: no request can make the server send to anyone else.

:class:`Discovery` is given the four addresses and answers one question,
:meth:`Discovery.answer`: the reply bytes, the local address to send them
from, and the client address to send them to.
"""

from __future__ import annotations

import attrs

from webrtcstack.stun.attributes import Address, normalize_host
from webrtcstack.stun.binding import BindingHandler, error_response
from webrtcstack.stun.constants import AttrType, ErrorCode, MessageClass, Method
from webrtcstack.stun.message import Message, encode

__all__ = ["Discovery", "DiscoveryAnswer", "CHANGE_IP", "CHANGE_PORT"]

CHANGE_IP = 0x04
CHANGE_PORT = 0x02


@attrs.frozen
class DiscoveryAnswer:
    """What to send: ``reply`` from the local address ``origin`` to the client address ``to``."""

    reply: bytes
    origin: Address
    to: Address


class Discovery:
    """RFC 5780 answers for a server on ``ips`` × ``ports`` (two of each, one family).

    :param binding: the one Binding handler (its counters and SOFTWARE).
    """

    def __init__(self, binding: BindingHandler, ips: tuple[str, str], ports: tuple[int, int]) -> None:
        if len(set(ips)) != 2 or len(set(ports)) != 2:
            raise ValueError("RFC 5780 needs two different IP addresses and two different ports")
        self.binding = binding
        self.ips = (normalize_host(ips[0]), normalize_host(ips[1]))
        self.ports = ports

    def addresses(self) -> list[Address]:
        """The four local addresses, primary first."""
        return [(ip, port) for ip in self.ips for port in self.ports]

    def knows(self, local: Address) -> bool:
        """Whether ``local`` is one of the four addresses."""
        return normalize_host(local[0]) in self.ips and local[1] in self.ports

    def _other_ip(self, ip: str) -> str:
        return self.ips[1] if ip == self.ips[0] else self.ips[0]

    def _other_port(self, port: int) -> int:
        return self.ports[1] if port == self.ports[0] else self.ports[0]

    def answer(self, raw: bytes, source: Address, local: Address) -> DiscoveryAnswer | None:
        """The answer to one UDP datagram that reached ``local`` from ``source`` (None: nothing to send).

        :raises StunDecodeError: not STUN, malformed, or a wrong FINGERPRINT (dropped by the caller).
        """
        binding = self.binding
        counters = binding.counters
        message = binding.request_of(raw)  # the Binding handler's own checks and counts
        if message is None:
            return None
        host = normalize_host(local[0])
        if message.method != Method.BINDING:
            counters.error_responses += 1
            return DiscoveryAnswer(error_response(message, ErrorCode.BAD_REQUEST, software=binding.software),
                                   (host, local[1]), source)
        unknown = tuple(t for t in binding.unknown_required(message) if t != AttrType.CHANGE_REQUEST)
        if unknown:
            counters.error_responses += 1
            return DiscoveryAnswer(error_response(message, ErrorCode.UNKNOWN_ATTRIBUTE, software=binding.software,
                                                  extra=((AttrType.UNKNOWN_ATTRIBUTES, unknown),)),
                                   (host, local[1]), source)
        flags = message.get(AttrType.CHANGE_REQUEST) or 0
        origin = (self._other_ip(host) if flags & CHANGE_IP else host,
                  self._other_port(local[1]) if flags & CHANGE_PORT else local[1])
        other = (self._other_ip(host), self._other_port(local[1]))
        port = message.get(AttrType.RESPONSE_PORT)
        to = (source[0], int(port)) if port else source
        counters.responses += 1
        return DiscoveryAnswer(self.success(message, source, origin, other), origin, to)

    def success(self, request: Message, source: Address, origin: Address, other: Address) -> bytes:
        """XOR-MAPPED-ADDRESS and MAPPED-ADDRESS (only the latter for an RFC 3489 client), RESPONSE-ORIGIN,
        OTHER-ADDRESS, SOFTWARE and FINGERPRINT.

        Plain Binding answers leave MAPPED-ADDRESS out (stun/binding.py), but
        discovery clients read it (coturn's ``turnutils_natdiscovery`` says
        "Not received mapped address attribute" without it), as coturn sends both.
        """
        mapped = (normalize_host(source[0]), source[1])
        attributes: list[tuple[int, object]] = [] if request.classic else [(AttrType.XOR_MAPPED_ADDRESS, mapped)]
        attributes += [
            (AttrType.MAPPED_ADDRESS, mapped),
            (AttrType.RESPONSE_ORIGIN, origin),
            (AttrType.OTHER_ADDRESS, other),
        ]
        if self.binding.software:
            attributes.append((AttrType.SOFTWARE, self.binding.software))
        response = Message(Method.BINDING, MessageClass.SUCCESS, request.transaction_id, tuple(attributes))
        return encode(response, fingerprint=not request.classic)
