"""Who an HTTP client is: behind trusted proxies, and as an anonymised access log writes it.

Plain functions, no I/O.  The HTTP channel (:mod:`webrtcstack.httpsite`)
hands them the TCP peer's address and the request's header values; every
other user of a client address (the WebSocket limits, the logs) takes what
the channel found.

**Behind a reverse proxy** (nginx, HAProxy, a cloud load balancer) every
connection comes from the proxy.  Only when the peer is one of ``[http]
trusted_proxies`` are its headers believed: ``Forwarded`` (RFC 7239) when
present, else ``X-Forwarded-For`` and ``X-Forwarded-Proto``.  The chain of
addresses is read from the right (the hop nearest to us) past every trusted
proxy; the first address that is not one is the client.  A header from an
untrusted peer is ignored, so nobody can choose their own address to slip a
per-address limit.  A malformed entry ends the walk at the last good hop.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

import attr

__all__ = ["ForwardedClient", "is_trusted", "client_behind_proxies", "truncate_address",
           "anonymise_path"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ForwardedClient:
    """The client as the request's headers say (or the peer, when they are not believed)."""

    ip: str
    #: ``https``/``http`` as the proxy received the request; None when no trusted proxy said
    proto: str | None = None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a header's node: ``1.2.3.4``, ``1.2.3.4:5``, ``[v6]``, ``[v6]:5``, ``v6``; else None."""
    node = text.strip().strip('"')
    if node.startswith("["):
        node = node[1:node.find("]")] if "]" in node else ""
    elif node.count(":") == 1:
        node = node.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(node)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in trusted)


def is_trusted(host: str, trusted: Sequence[Network]) -> bool:
    """Whether the address ``host`` is in one of the ``trusted`` networks."""
    ip = _ip(host)
    return ip is not None and _trusted(ip, trusted)


_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


def _forwarded_elements(values: Iterable[str]) -> list[dict[str, str]] | None:
    """RFC 7239 §4: comma-separated elements of ``;``-separated pairs; None when malformed."""
    elements: list[dict[str, str]] = []
    for value in values:
        for element in value.split(","):
            pairs: dict[str, str] = {}
            for part in element.split(";"):
                if not part.strip():
                    continue
                m = _PAIR.fullmatch(part)
                if m is None:
                    return None
                pairs[m.group(1).lower()] = m.group(2).strip('"')
            elements.append(pairs)
    return elements


def client_behind_proxies(peer: str, trusted: Sequence[Network], *, forwarded: Sequence[str] = (),
                          x_forwarded_for: Sequence[str] = (), x_forwarded_proto: Sequence[str] = ()) -> ForwardedClient:
    """The client of a request that came from ``peer`` (see the module docstring).

    :param forwarded: the request's ``Forwarded`` header values, in order.
    :param x_forwarded_for: its ``X-Forwarded-For`` values, in order.
    :param x_forwarded_proto: its ``X-Forwarded-Proto`` values, in order.
    """
    peer_ip = _ip(peer)
    if peer_ip is None or not trusted or not _trusted(peer_ip, trusted):
        return ForwardedClient(peer)
    hops: list[tuple[str, str | None]] = []  # (address text, proto) from the client towards us
    if forwarded:
        elements = _forwarded_elements(forwarded)
        if elements is None:
            return ForwardedClient(peer)
        hops = [(e.get("for", ""), e.get("proto")) for e in elements]
    elif x_forwarded_for:
        hops = [(a.strip(), None) for v in x_forwarded_for for a in v.split(",")]
    client, proto = str(peer_ip), None
    for text, hop_proto in reversed(hops):
        ip = _ip(text)
        if ip is None:
            break  # "unknown", an obfuscated name, or garbage: stop at the last hop we could read
        client, proto = str(ip), hop_proto
        if not _trusted(ip, trusted):
            break
    if not forwarded:
        # X-Forwarded-Proto: the first value is what the client used (the proxy it reached wrote it).
        values = [p.strip().lower() for v in x_forwarded_proto for p in v.split(",") if p.strip()]
        proto = values[0] if values else None
    if proto not in ("http", "https"):
        proto = None
    return ForwardedClient(client, proto)


def truncate_address(host: str) -> str:
    """An address with its host part dropped: IPv4 to its /24, IPv6 to its /48 (as analytics tools do)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "-"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


#: paths whose last segment is a client id (apprtc's room API and collider's HTTP API)
_CLIENT_PATHS = re.compile(r"\A(/(?:message|leave|bye|collider)/[^/?]+/)[^/?]+")
_ROUTE_WORDS = {"r", "join", "message", "leave", "bye", "params", "v1alpha", "static", "ws", "collider", "status"}


def anonymise_path(path: str, *, collider_site: bool = False) -> str:
    """``path`` with client ids replaced by ``-`` and the query string dropped (room names stay).

    :param collider_site: the path is on collider's own listener, where ``/ROOM/CLIENT`` posts messages.
    """
    path = path.split("?", 1)[0]
    m = _CLIENT_PATHS.match(path)
    if m:
        return m.group(1) + "-"
    parts = path.split("/")
    if collider_site and len(parts) == 3 and parts[1] and parts[1] not in _ROUTE_WORDS:
        return f"/{parts[1]}/-"
    return path
