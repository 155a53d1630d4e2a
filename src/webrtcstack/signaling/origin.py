"""Which browser origins may open a signaling WebSocket.

This module is part of the sans-IO core.
"""

from __future__ import annotations

__all__ = ["origin_allowed"]

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _host_of(hostport: str) -> str:
    """``h``, ``h:1`` or ``[v6]:1`` -> the host name, lower case, no brackets."""
    text = hostport.strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


def origin_allowed(origin: str | None, *, allowed: tuple[str, ...], host_header: str, public_url: str = "") -> bool:
    """Whether a WebSocket handshake with this ``Origin`` may go on.

    - no ``Origin`` header: yes (browsers always send one; native clients
      and collider's own tools do not);
    - ``*`` in ``allowed``: yes;
    - the site's own origin: yes (same host name as the request's ``Host``,
      any port, so a page on the HTTP port may use the collider port; or
      ``public_url``);
    - with ``allowed`` empty: also ``localhost``, ``127.0.0.1`` and ``[::1]``;
    - otherwise only an exact entry of ``allowed`` (scheme://host[:port]).
    """
    if origin is None or origin == "":
        return True
    if "*" in allowed:
        return True
    origin = origin.strip().lower().rstrip("/")
    if "://" not in origin:
        return False  # "null" (file://, sandboxed frames) and garbage
    if origin in allowed:
        return True
    if public_url and origin == public_url.lower().rstrip("/"):
        return True
    origin_host = _host_of(origin.split("://", 1)[1])
    if host_header and origin_host == _host_of(host_header):
        return True
    return not allowed and origin_host in _LOCAL_HOSTS
