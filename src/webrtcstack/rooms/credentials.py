"""ICE servers for clients: our STUN/TURN URLs and coturn-style REST credentials.

The credential rule is the TURN REST API draft's, as coturn implements it
with ``use-auth-secret``: the username is ``<expiry>:<name>`` (the expiry is
a Unix time in seconds, the separator configurable) and the password is
base64(HMAC-SHA1(secret, username)).  The TURN server recomputes the password
from the username, so nothing is stored.

This module is part of the sans-IO core.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from webrtcstack.config import Endpoint, StackConfig

__all__ = ["rest_credentials", "ice_host_for", "ice_urls", "ice_servers"]


def rest_credentials(secret: str, name: str, *, ttl_s: int, now: float, separator: str = ":") -> tuple[str, str]:
    """Mint ``(username, password)`` valid until ``now + ttl_s``.

    :param secret: the shared secret the TURN server also knows.
    :param name: the user part after the expiry (may be empty).
    """
    from webrtcstack.turn.auth import rest_password

    expiry = int(now) + int(ttl_s)
    username = f"{expiry}{separator}{name}" if name else str(expiry)
    return username, rest_password(secret, username)


def _is_v6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _hostname_of(url_or_hostport: str) -> str:
    """The host of ``https://h:1/``, ``h:1``, ``[::1]:1`` or ``h``, without brackets."""
    text = url_or_hostport
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


def ice_host_for(listen: Endpoint, config: StackConfig, request_host: str) -> str | None:
    """The host name clients should use for one TURN listen endpoint, or None to skip it.

    A specific listen address is used as is (or its public address when
    ``external_ip`` maps it).  For a wildcard (0.0.0.0 or ::) the host is the
    ``external_ip`` public address of that family, else ``public_url``'s host,
    else the request's ``Host``; the IPv6 wildcard is skipped unless that
    host is IPv6.
    """
    wildcard = listen.host in ("0.0.0.0", "::")
    if not wildcard:
        for public, private in config.turn.external_ip:
            if private == listen.host:
                return public
        return listen.host
    family6 = listen.host == "::"
    for public, _private in config.turn.external_ip:
        if _is_v6(public) == family6:
            return public
    if config.http.public_url:
        host = _hostname_of(config.http.public_url)
    else:
        host = _hostname_of(request_host)
    if not host:
        return None
    if family6 and not _is_v6(host):
        return None
    return host


def ice_urls(config: StackConfig, request_host: str) -> tuple[list[str], list[str]]:
    """``(turn_urls, stun_urls)`` for every ``[turn] listen`` and ``tls_listen`` endpoint."""
    turn: list[str] = []
    stun: list[str] = []
    if not config.turn.enabled:
        return turn, stun
    for ep in config.turn.listen:
        host = ice_host_for(ep, config, request_host)
        if host is None:
            continue
        hp = f"{_url_host(host)}:{ep.port}"
        for url, bucket in ((f"stun:{hp}", stun), (f"turn:{hp}?transport=udp", turn), (f"turn:{hp}?transport=tcp", turn)):
            if url not in bucket:
                bucket.append(url)
    for ep in config.turn.tls_listen:
        host = ice_host_for(ep, config, request_host)
        if host is None:
            continue
        url = f"turns:{_url_host(host)}:{ep.port}?transport=tcp"
        if url not in turn:
            turn.append(url)
    return turn, stun


def ice_servers(config: StackConfig, secret: str, request_host: str, *, now: float, name: str | None = None,
                urls: tuple[list[str], list[str]] | None = None) -> dict[str, Any]:
    """The ``/v1alpha/iceconfig`` answer: ``{"iceServers": [...], "lifetimeDuration": "<ttl>s"}``.

    ``urls`` is always an array (apprtc's ``tt`` filter indexes it).  Each
    answer gets its own random user name so per-user TURN quotas stay per
    caller.

    :param urls: ``(turn_urls, stun_urls)`` to hand out instead of this
        process's own (:func:`ice_urls`); with ``[redis]``, those of the least
        loaded live nodes.
    """
    ttl = config.rooms.turn_credential_ttl_seconds
    turn, stun = urls if urls is not None else ice_urls(config, request_host)
    servers: list[dict[str, Any]] = []
    if turn:
        username, password = rest_credentials(
            secret, name if name is not None else secrets.token_hex(4),
            ttl_s=ttl, now=now, separator=config.turn.rest_api_separator,
        )
        servers.append({"urls": turn, "username": username, "credential": password})
    if stun:
        servers.append({"urls": stun})
    extra = config.rooms.extra_ice_urls
    extra_turn = [u for u in extra if u.startswith(("turn:", "turns:"))]
    extra_stun = [u for u in extra if u.startswith(("stun:", "stuns:"))]
    if extra_turn and config.rooms.extra_ice_username:
        servers.append({"urls": extra_turn, "username": config.rooms.extra_ice_username,
                        "credential": config.rooms.extra_ice_credential})
    elif extra_turn:
        username, password = rest_credentials(
            config.rooms.extra_ice_secret or secret, name if name is not None else secrets.token_hex(4),
            ttl_s=ttl, now=now, separator=config.turn.rest_api_separator,
        )
        servers.append({"urls": extra_turn, "username": username, "credential": password})
    if extra_stun:
        servers.append({"urls": extra_stun})
    return {"iceServers": servers, "lifetimeDuration": f"{ttl}s"}
