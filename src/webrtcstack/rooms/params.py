"""The room parameters apprtc clients read (``/params``, ``/join``, the call page).

Field names, which fields are JSON-encoded strings, and the query options
(``hd``, ``audio``, ``video``, ``it``, ``tt``, ``ts``, ``wshpp``, ``wstls``,
``debug=loopback``, ...) follow apprtc's room server, written here afresh.
Inputs are plain values (the query as ordered pairs, the User-Agent, base
URLs) so this is testable without a web server.

This module is part of the sans-IO core.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from typing import Any

import attr

__all__ = ["Query", "SiteUrls", "media_track_constraints", "room_parameters"]


class Query:
    """A request's query arguments, in order, with apprtc's ``request.get`` semantics."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)
        self._first: dict[str, str] = {}
        for name, value in self.pairs:
            self._first.setdefault(name, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default`` when absent."""
        return self._first.get(name, default)

    def has(self, name: str) -> bool:
        """Whether ``name`` appears at all."""
        return name in self._first

    def names(self) -> list[str]:
        """The distinct names in first-seen order."""
        return list(self._first)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SiteUrls:
    """Where this site is, as the client should see it."""

    #: ``http://host:port`` or ``https://...`` (no trailing slash)
    base_url: str
    #: the path prefix of the collider HTTP API on this site
    collider_prefix: str = "/collider"


def _bool_param(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None


def media_track_constraints(text: str | None) -> bool | dict[str, Any]:
    """One of ``audio``/``video``: true/false/empty, or ``[mandatory:|optional:]k=v,...``.

    Keys without a prefix are mandatory, except ``goog*`` keys, which are
    optional.  Values stay strings.  Items without ``=`` are skipped.
    """
    if text is None or text == "" or text.lower() == "true":
        return True
    if text.lower() == "false":
        return False
    mandatory: dict[str, str] = {}
    optional: list[dict[str, str]] = []
    for item in text.split(","):
        key_part, sep, value = item.partition("=")
        if not sep:
            continue
        kind, colon, key = key_part.partition(":")
        if not colon:
            key = kind
            kind = "optional" if key.startswith("goog") else "mandatory"
        if kind == "mandatory":
            mandatory[key] = value
        elif kind == "optional":
            optional.append({key: value})
    return {"mandatory": mandatory, "optional": optional}


def _media_constraints(query: Query, user_agent: str, warnings: list[str]) -> dict[str, Any]:
    audio = query.get("audio")
    video = query.get("video")
    hd = query.get("hd")
    if hd and video:
        warnings.append(f'The "hd" parameter has overridden video={video}')
    if hd is not None and hd.lower() == "true":
        video = "mandatory:minWidth=1280,mandatory:minHeight=720"
    elif hd is None and video is None and "Chrome" in user_agent and "Android" not in user_agent:
        video = "optional:minWidth=1280,optional:minHeight=720"
    constraints: dict[str, Any] = {
        "audio": media_track_constraints(audio),
        "video": media_track_constraints(video),
    }
    if query.get("firefox_fake_device"):
        constraints["fake"] = True
    return constraints


def _pc_constraints(query: Query, loopback: bool) -> dict[str, Any]:
    optional: list[dict[str, bool]] = []
    for param, name in (("dtls", "DtlsSrtpKeyAgreement"), ("dscp", "googDscp"), ("ipv6", "googIPv6")):
        value = "false" if (param == "dtls" and loopback) else query.get(param)
        flag = _bool_param(value)
        if flag is not None:
            optional.append({name: flag})
    return {"optional": optional}


def room_link(base_url: str, room_id: str, query: Query) -> str:
    """``<base>/r/<room>`` plus every query argument (first value, HTML-escaped), as apprtc builds it."""
    link = f"{base_url}/r/{room_id}"
    for i, name in enumerate(query.names()):
        value = query.get(name) or ""
        link += ("?" if i == 0 else "&") + html.escape(name, True) + "=" + html.escape(value, True)
    return link


def _names_allowed_host(value: str, allowed: tuple[str, ...], *, url: bool) -> bool:
    """Whether ``value`` (``host[:port]``, or an http(s) URL when ``url``) names a host in ``allowed``.

    An entry without a port allows that host on any port.
    """
    text = value.strip().lower()
    if url:
        m = re.match(r"^https?://([^/?#@]+)(?:[/?#]|$)", text)
        if m is None:
            return False
        text = m.group(1)
    if not text or any(c in text for c in "/?#@\\ "):
        return False
    host = text.rsplit(":", 1)[0] if re.search(r":\d+$", text) and not text.endswith("]") else text
    return text in allowed or host in allowed


def room_parameters(
    query: Query,
    *,
    urls: SiteUrls,
    user_agent: str = "",
    header_message: str = "",
    bypass_join_confirmation: bool = False,
    version: str = "",
    room_id: str | None = None,
    allowed_option_hosts: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Every field of apprtc's ``get_room_parameters`` for this request.

    ``room_id`` adds ``room_id`` and ``room_link``; the join handler adds
    ``client_id``, ``is_initiator`` and ``messages`` itself.

    The options that name another server (``wshpp``: the signaling host;
    ``ts``: the ICE server provider) are
    honoured only for hosts in ``allowed_option_hosts``: a link written by
    someone else must not move a call's signaling (and so its DTLS
    fingerprints) or its ICE servers onto their machines.  Otherwise they
    are ignored with a warning on the page.
    """
    warnings: list[str] = []
    if query.has("minre") or query.has("maxre"):
        warnings.append('The "minre" and "maxre" parameters are no longer supported. Use "video" instead.')
    loopback = query.get("debug") == "loopback"
    media = _media_constraints(query, user_agent, warnings)
    pc_config: dict[str, Any] = {"iceServers": [], "bundlePolicy": "max-bundle", "rtcpMuxPolicy": "require"}
    it = query.get("it")
    if it:
        pc_config["iceTransports"] = it

    base = urls.base_url
    secure = base.startswith("https://")
    hostport = base.split("://", 1)[1]
    ts = query.get("ts")
    if ts and not _names_allowed_host(ts, allowed_option_hosts, url=True):
        warnings.append("The \"ts\" option names a server this site does not allow; our own ICE servers are used.")
        ts = None
    if ts is None:
        ice_server_url = f"{base}/v1alpha/iceconfig?key={query.get('apikey') or ''}"
    elif ts == "":
        ice_server_url = ""
    else:
        ice_server_url = f"{ts}/v1alpha/iceconfig?key={query.get('apikey') or ''}"

    wshpp = query.get("wshpp")
    wstls = _bool_param(query.get("wstls"))
    if wshpp and not _names_allowed_host(wshpp, allowed_option_hosts, url=False):
        warnings.append("The \"wshpp\" option names a server this site does not allow; our own signaling is used.")
        wshpp = None
    tls = secure if wstls is None else wstls
    if wshpp:
        wss_url = f"{'wss' if tls else 'ws'}://{wshpp}/ws"
        wss_post_url = f"{'https' if tls else 'http'}://{wshpp}"
    else:
        wss_url = f"{'wss' if tls else 'ws'}://{hostport}/ws"
        wss_post_url = f"{'https' if tls else 'http'}://{hostport}{urls.collider_prefix}"

    params: dict[str, Any] = {
        "header_message": header_message,
        "error_messages": [],
        "warning_messages": warnings,
        "is_loopback": json.dumps(loopback),
        "pc_config": json.dumps(pc_config),
        "pc_constraints": json.dumps(_pc_constraints(query, loopback)),
        "offer_options": json.dumps({}),
        "media_constraints": json.dumps(media),
        "ice_server_url": ice_server_url,
        "ice_server_transports": query.get("tt") or "",
        "include_loopback_js": '<script src="/js/loopback.js"></script>' if loopback else "",
        "wss_url": wss_url,
        "wss_post_url": wss_post_url,
        "bypass_join_confirmation": json.dumps(bypass_join_confirmation),
        "version_info": json.dumps({"gitHash": "", "branch": "webrtcstack", "time": version}),
    }
    if room_id is not None:
        link_base = base
        if wstls is True and base.startswith("http://"):
            link_base = "https://" + hostport
        params["room_id"] = room_id
        params["room_link"] = room_link(link_base, room_id, query)
    return params
