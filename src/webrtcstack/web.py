"""The web side of the stack: room server, call page, static files and signaling.

:func:`build_web` wires the sans-IO room registry and signaling hub to
twisted.web and Autobahn and returns a :class:`WebApp` whose sites the
service binds.  Nothing here binds a port.

Main site (``[http] listen``)::

    /                       landing page            /r/<room>        call page
    /join /message /leave /bye /params /v1alpha/iceconfig   room server API
    /ws                     signaling WebSocket     /collider/...    collider HTTP API
    /js /css /images        page assets

Collider site (``[signaling] listen``): ``/ws``, ``/status``, ``/<room>/<client>``.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import attr
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from webrtcstack import __version__ as _version
from webrtcstack.config import StackConfig
from webrtcstack.httpsite import LimitedSite
from webrtcstack.limits import ByteBudget, ReplyRateLimiter
from webrtcstack.rooms.model import RoomRegistry
from webrtcstack.rooms.resource import RoomServerResource
from webrtcstack.rooms.storage import MemoryStorage, Storage
from webrtcstack.signaling.hub import SignalingHub
from webrtcstack.signaling.protocol import HubRunner, SignalingServerFactory
from webrtcstack.signaling.resource import ColliderRootResource, SignalingResource

__all__ = ["WebApp", "build_web", "COLLIDER_PREFIX"]

#: where the collider HTTP API sits on the main site (``wss_post_url``)
COLLIDER_PREFIX = b"/collider"


class _StaticFile(File):
    """Static files without directory listings."""

    def directoryListing(self) -> Resource:
        return NoResource()

    def getChild(self, path: bytes, request: Request) -> Resource:
        # A NUL, another control byte or bytes that are not UTF-8 can name
        # no file of ours; the OS would raise on some (ValueError for NUL).
        if not _plain_segment(path):
            return NoResource()
        return super().getChild(path, request)  # type: ignore[no-any-return]


def _plain_segment(segment: bytes) -> bool:
    """Whether a decoded path segment could be a file name we serve."""
    try:
        text = segment.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 0x20 or c == "\x7f" for c in text)


class WebRootResource(Resource):
    """Dispatches the first path segment; everything else is the room server."""

    def __init__(self, rooms: Resource | None, ws: Resource | None, collider: Resource | None, static_dir: str) -> None:
        super().__init__()
        self.rooms = rooms
        self.ws = ws
        self.collider = collider
        self.static = {name: _StaticFile(f"{static_dir}/{name.decode()}") for name in (b"js", b"css", b"images")}

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"ws" and not request.postpath and self.ws is not None:
            return self.ws
        if path == b"collider" and self.collider is not None:
            return self.collider
        if path in self.static and request.method in (b"GET", b"HEAD"):
            return self.static[path]
        if self.rooms is not None:
            return self.rooms
        return NoResource()

    def render(self, request: Request) -> bytes:
        if self.rooms is not None:
            return self.rooms.render(request)
        return NoResource().render(request)


@attr.s(slots=True, auto_attribs=True)
class WebApp:
    """The built web side: ``site`` for ``[http] listen``, ``collider_site`` for ``[signaling] listen``."""

    site: Site
    collider_site: Site | None
    runner: HubRunner
    hub: SignalingHub
    signaling_factory: SignalingServerFactory | None
    room_resource: RoomServerResource | None = None

    def apply_config(self, config: StackConfig, auth_secrets: tuple[str, ...]) -> None:
        """Reload: new limits, page settings and TURN secrets apply to what comes next.

        Listen addresses and on/off switches need a restart; rooms, clients
        and sockets are kept.
        """
        rooms_cfg, sig = config.rooms, config.signaling
        hub = self.hub
        hub.capacity = rooms_cfg.capacity
        hub.register_timeout_s = sig.register_timeout_seconds
        hub.max_queued = sig.max_queued_messages
        hub.max_queued_bytes = sig.max_queued_bytes
        hub.buffers.limit = config.stack.max_buffered_bytes
        hub.max_rooms = rooms_cfg.max_rooms
        if hub.rooms is not None:
            hub.rooms.capacity = rooms_cfg.capacity
            hub.rooms.room_ttl_s = rooms_cfg.room_ttl_seconds
            hub.rooms.max_rooms = rooms_cfg.max_rooms
            hub.rooms.max_stored_messages = rooms_cfg.max_stored_messages
            hub.rooms.max_message_bytes = rooms_cfg.max_message_bytes
            hub.rooms.max_stored_bytes = rooms_cfg.max_stored_bytes
        factory = self.signaling_factory
        if factory is not None:
            factory.allowed_origins = sig.allowed_origins
            factory.public_url = config.http.public_url
            factory.apply_limits(sig.max_message_bytes, sig.ping_interval_seconds)
            factory.max_connections = sig.max_connections
            factory.max_connections_per_ip = sig.max_connections_per_ip
            factory.messages_per_second = sig.messages_per_second
            factory.message_burst = sig.message_burst
            factory.max_send_buffer_bytes = sig.max_send_buffer_bytes
        for site in (self.site, self.collider_site):
            if isinstance(site, LimitedSite):
                site.trusted_proxies = config.http.trusted_proxies
                site.access_log = config.http.access_log
                site.max_body_bytes = config.http.max_body_bytes
                site.request_timeout_s = config.http.request_timeout_seconds
                if site.writes.per_second != config.http.writes_per_second_per_ip:
                    site.writes = ReplyRateLimiter(config.http.writes_per_second_per_ip)
        if self.room_resource is not None:
            self.room_resource.config = config
            self.room_resource.auth_secrets = auth_secrets

    def stop(self) -> None:
        """Cancel the hub's timer and close every signaling socket."""
        self.runner.stop()

    def start_draining(self) -> None:
        """The service is going down: refuse new joins, let calls in progress go on."""
        self.hub.draining = True


def _site_options(config: StackConfig) -> dict[str, Any]:
    """What every public site takes from ``[http]`` beside its limits: trusted proxies, the access log."""
    return {"trusted_proxies": config.http.trusted_proxies, "access_log": config.http.access_log}


def build_web(config: StackConfig, reactor: Any, auth_secrets: tuple[str, ...], *, storage: Storage | None = None) -> WebApp:
    """Build the room server, signaling and page resources from ``config``.

    :param reactor: gives the time and the hub's timer (a ``task.Clock`` in tests).
    :param auth_secrets: the effective TURN REST secrets.
    :param storage: where state lives (default: a fresh :class:`MemoryStorage`).
    """
    storage = storage if storage is not None else MemoryStorage()
    rooms_cfg, sig = config.rooms, config.signaling
    buffers = ByteBudget(config.stack.max_buffered_bytes)
    registry = None
    if rooms_cfg.enabled:
        registry = RoomRegistry(
            storage,
            capacity=rooms_cfg.capacity,
            room_ttl_s=rooms_cfg.room_ttl_seconds,
            max_rooms=rooms_cfg.max_rooms,
            max_stored_messages=rooms_cfg.max_stored_messages,
            max_message_bytes=rooms_cfg.max_message_bytes,
            max_stored_bytes=rooms_cfg.max_stored_bytes,
            buffers=buffers,
        )
    hub = SignalingHub(
        storage,
        rooms=registry,
        capacity=rooms_cfg.capacity,
        register_timeout_s=sig.register_timeout_seconds,
        max_queued=sig.max_queued_messages,
        max_queued_bytes=sig.max_queued_bytes,
        max_rooms=rooms_cfg.max_rooms,
        buffers=buffers,
    )
    runner = HubRunner(hub, reactor)

    factory = None
    ws_resource = None
    collider_main = None
    collider_site = None
    if sig.enabled:
        factory = SignalingServerFactory(
            runner,
            allowed_origins=sig.allowed_origins,
            public_url=config.http.public_url,
            max_message_bytes=sig.max_message_bytes,
            max_connections=sig.max_connections,
            max_connections_per_ip=sig.max_connections_per_ip,
            messages_per_second=sig.messages_per_second,
            ping_interval_s=sig.ping_interval_seconds,
            message_burst=sig.message_burst,
            max_send_buffer_bytes=sig.max_send_buffer_bytes,
        )
        runner.factory = factory
        ws_resource = SignalingResource(factory)
        collider_main = ColliderRootResource(runner, None, COLLIDER_PREFIX, sig.max_message_bytes)
        if sig.listen:
            collider_root = ColliderRootResource(runner, ws_resource, b"", sig.max_message_bytes)
            collider_site = LimitedSite(collider_root, max_body_bytes=config.http.max_body_bytes,
                                        request_timeout_s=config.http.request_timeout_seconds, clock=reactor,
                                        writes_per_second=config.http.writes_per_second_per_ip, collider=True,
                                        **_site_options(config))

    room_resource = RoomServerResource(config, runner, auth_secrets, version=_version) if registry is not None else None
    static_dir = str(importlib.resources.files("webrtcstack").joinpath("static"))
    root = WebRootResource(room_resource, ws_resource, collider_main, static_dir)
    site = LimitedSite(root, max_body_bytes=config.http.max_body_bytes,
                       request_timeout_s=config.http.request_timeout_seconds, clock=reactor,
                       writes_per_second=config.http.writes_per_second_per_ip, **_site_options(config))
    return WebApp(site=site, collider_site=collider_site, runner=runner, hub=hub, signaling_factory=factory,
                  room_resource=room_resource)
