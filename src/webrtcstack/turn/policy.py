# -*- test-case-name: tests.turn.test_policy -*-
"""Which peers an allocation may talk to (the peer address policy).

Rules (RFC 8656 §17 and §21 ask servers to restrict peers; we deny by default):

* An address is first **normalised**: IPv4-mapped (``::ffff:a.b.c.d``),
  IPv4-compatible (``::a.b.c.d``), IPv4-translated (``::ffff:0:a.b.c.d``) and
  NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``) IPv6 spellings become the IPv4
  address they carry, so every check below sees the real destination.
* **6to4** (``2002::/16``, the IPv4 address in bits 16–47) and **Teredo**
  (``2001::/32``: the client's IPv4 address, inverted, in the last 32 bits;
  the Teredo server's in bits 32–63) carry IPv4 too, but they are real IPv6
  destinations (a tunnel relay delivers them): the peer stays the IPv6
  address, and the IPv4 addresses inside must also pass every rule, so
  ``2002:7f00:1::`` (6to4 for 127.0.0.1) or a Teredo address for
  169.254.169.254 is refused like the IPv4 address itself.
* ``allowed_peers`` wins over everything, then ``denied_peers``, then the
  built-in special-purpose ranges (loopback is allowed only with
  ``allow_loopback_peers``).
* Private ranges (RFC 1918, ULA, CGNAT) are allowed unless listed in
  ``denied_peers``: WebRTC peers behind the same NAT as the server need them.

The policy is consulted on CreatePermission, ChannelBind and Send, and the
relay fast path only forwards to peers that have a permission, so a denied
peer never gets a byte.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Union

__all__ = ["PeerPolicy", "normalise_address", "tunnelled_ipv4", "DEFAULT_DENIED"]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

#: IANA special-purpose ranges that never make sense as a relay peer.
DEFAULT_DENIED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",          # "this network"
        "169.254.0.0/16",     # link local, incl. 169.254.169.254 cloud metadata
        "192.0.0.0/24",       # IETF protocol assignments
        "192.0.2.0/24",       # TEST-NET-1
        "198.18.0.0/15",      # benchmarking
        "198.51.100.0/24",    # TEST-NET-2
        "203.0.113.0/24",     # TEST-NET-3
        "224.0.0.0/4",        # multicast
        "240.0.0.0/4",        # reserved, incl. 255.255.255.255
        "::/128",             # unspecified
        "::ffff:0:0/96",      # IPv4-mapped (only reached if normalising failed)
        "100::/64",           # discard-only
        "2001:db8::/32",      # documentation
        "fe80::/10",          # link local
        "fec0::/10",          # deprecated site local
        "ff00::/8",           # multicast
    )
)

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"),)
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")


def normalise_address(host: str) -> IPAddress:
    """Parse ``host`` and unwrap IPv4 addresses carried inside IPv6 spellings.

    :raises ValueError: ``host`` is not an IP address.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv4Address):
        return address
    mapped = address.ipv4_mapped
    if mapped is not None:
        return mapped
    packed = address.packed
    if address in _COMPATIBLE and address not in (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")):
        return ipaddress.IPv4Address(packed[12:])
    if address in _TRANSLATED or address in _NAT64[0] or address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(packed[12:])
    return address


def tunnelled_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses a 6to4 or Teredo IPv6 address leads to (none for any other address)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return ()
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        server, client = address.teredo
        return (client, server)
    return ()


class PeerPolicy:
    """Decides whether a peer address may be relayed to.

    :param allow_loopback: allow 127.0.0.0/8 and ::1 (tests only).
    :param denied: extra CIDR ranges to deny.
    :param allowed: CIDR ranges always allowed (checked first).
    """

    def __init__(self, *, allow_loopback: bool = False, denied: Iterable[IPNetwork] = (),
                 allowed: Iterable[IPNetwork] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(allowed)
        deny = list(DEFAULT_DENIED) + list(denied)
        if not allow_loopback:
            deny += list(_LOOPBACK)
        self.denied: tuple[IPNetwork, ...] = tuple(deny)

    def permits(self, address: IPAddress) -> bool:
        """True if ``address`` (already normalised) may be a peer."""
        for network in self.allowed:
            if address.version == network.version and address in network:
                return True
        for network in self.denied:
            if address.version == network.version and address in network:
                return False
        return True

    def check(self, host: str) -> IPAddress | None:
        """Normalise ``host`` and return it if permitted, else ``None``."""
        try:
            address = normalise_address(host)
        except ValueError:
            return None
        if not self.permits(address):
            return None
        listed = any(address.version == n.version and address in n for n in self.allowed)
        if not listed and any(not self.permits(inner) for inner in tunnelled_ipv4(address)):
            return None
        return address
