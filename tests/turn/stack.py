"""Real-socket helpers for TURN integration tests: an in-process server on loopback."""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer, reactor

from tests.support import free_port
from webrtcstack.config import parse_config
from webrtcstack.turn.adapters.driver import TurnDriver, build_turn_services

USER, PASSWORD = "ninefingers", "youhavetoberealistic"
SECRET = "logen-secret-123"
REALM = "north.gov"


class TurnStack:
    """Our TURN server on loopback, started and stopped around a test."""

    def __init__(self, extra: str = "", host: str = "127.0.0.1", relay_ip: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host=host)
        listen = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.config = parse_config(
            f"[turn]\nlisten = {listen}\nrealm = {REALM}\nrelay_ip = {relay_ip}\n"
            f"relay_ports = 40000-59999\nallow_loopback_peers = yes\nusers = {USER}:{PASSWORD}\n"
            f"static_auth_secret = {SECRET}\n{extra}[http]\nenabled = no\n", "test.ini")
        self.top = service.MultiService()
        for child in build_turn_services(self.config, reactor, self.config.turn.static_auth_secret):
            child.setServiceParent(self.top)
        self.driver: TurnDriver = next(s.driver for s in self.top if hasattr(s, "driver"))
        self.engine = self.driver.engine

    def start(self) -> None:
        self.top.startService()

    @defer.inlineCallbacks
    def stop(self) -> Any:
        yield self.top.stopService()
