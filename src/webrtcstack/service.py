"""Wiring: builder functions that turn a :class:`StackConfig` into services.

One child service per listener, all under one MultiService.  Nothing binds
until ``startService``; ``stopService`` closes every port and cancels every
timer, so a stopped stack leaves nothing behind.
"""

from __future__ import annotations

import secrets
from typing import Any

from twisted.application import service
from twisted.logger import Logger

from webrtcstack.config import StackConfig
from webrtcstack.sockets import ListenerService, raise_open_files_limit

log = Logger()


def describe_listeners(config: StackConfig) -> list[str]:
    """What would listen where, one line each (for ``--check`` and ``check-config``)."""
    lines: list[str] = []
    if config.turn.enabled:
        for ep in config.turn.listen:
            lines.append(f"STUN/TURN  udp+tcp  {ep}")
        for ep in config.turn.tls_listen:
            lines.append(f"TURN/TLS   tcp      {ep}")
        low, high = config.turn.relay_ports
        relay_ips = ", ".join(config.turn.relay_ip) or "0.0.0.0, ::"
        lines.append(f"TURN relay udp      {relay_ips} ports {low}-{high}")
    if config.http.enabled:
        for ep in config.http.listen:
            lines.append(f"HTTP/WS    tcp      {ep}")
        for ep in config.http.tls_listen:
            lines.append(f"HTTPS/WSS  tcp      {ep}")
        if config.signaling.enabled:
            for ep in config.signaling.listen:
                lines.append(f"collider   tcp      {ep}")
    if not lines:
        lines.append("nothing enabled")
    return lines


def effective_auth_secrets(config: StackConfig) -> tuple[str, ...]:
    """The TURN REST secrets in force: the configured ones, or one made now.

    The room server mints ICE credentials from the first; the TURN server
    accepts any of them.
    """
    if config.turn.static_auth_secret:
        return config.turn.static_auth_secret
    return (secrets.token_urlsafe(32),)


class ProcessSetupService(service.Service):
    """Process-wide set-up at start: raise the open files limit."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.setName("process")

    def startService(self) -> None:
        soft, hard = raise_open_files_limit(self.config.stack.max_open_files)
        log.info("open files limit {soft} (hard {hard})", soft=soft, hard=hard)
        service.Service.startService(self)


class CallbackService(service.Service):
    """Calls ``on_stop`` when stopped (used to cancel a component's timers)."""

    def __init__(self, name: str, on_stop: Any) -> None:
        self.setName(name)
        self.on_stop = on_stop

    def stopService(self) -> Any:
        service.Service.stopService(self)
        return self.on_stop()


def build_turn(config: StackConfig, reactor: Any, auth_secrets: tuple[str, ...]) -> list[service.IService]:
    """The STUN/TURN listeners."""
    from webrtcstack.turn.adapters.driver import build_turn_services

    return list(build_turn_services(config, reactor, auth_secrets))


def build_http(config: StackConfig, reactor: Any, auth_secrets: tuple[str, ...]) -> list[service.IService]:
    """The room server, call page and signaling listeners."""
    from webrtcstack.web import build_web

    app = build_web(config, reactor, auth_secrets)
    services: list[service.IService] = [CallbackService("web-timers", app.stop)]
    for ep in config.http.listen:
        services.append(ListenerService(reactor, "tcp", ep, app.site, what="http"))
    if config.signaling.enabled and app.collider_site is not None:
        for ep in config.signaling.listen:
            services.append(ListenerService(reactor, "tcp", ep, app.collider_site, what="collider"))
    return services


def build_service(config: StackConfig, reactor: Any) -> service.MultiService:
    """The whole stack: one MultiService, one child per listener."""
    top = service.MultiService()
    ProcessSetupService(config).setServiceParent(top)
    auth_secrets = effective_auth_secrets(config)
    children: list[service.IService] = []
    if config.turn.enabled:
        children += build_turn(config, reactor, auth_secrets)
    if config.http.enabled:
        children += build_http(config, reactor, auth_secrets)
    for child in children:
        child.setServiceParent(top)
    return top
