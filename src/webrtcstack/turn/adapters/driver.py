# -*- test-case-name: tests.integration.test_turn_sockets -*-
"""Wiring the TURN engine to the reactor: the services, the timer, the relays.

Contract with ``webrtcstack.service``::

    build_turn_services(config, reactor, auth_secrets) -> list[IService]

One service per listener (UDP and TCP for every ``[turn] listen`` endpoint)
plus one that owns the engine: it cancels the engine's single re-armed
timer and ends every allocation (closing every relay socket) on stop, so a
stopped stack leaves no port open and no delayed call pending.

Relay addresses: relay sockets bind to ``relay_ip`` (per family), else to
the private half of ``external_ip = public/private``, else to a specific
``listen`` address of that family, else to the wildcard.  XOR-RELAYED-ADDRESS
advertises the public ``external_ip``, else the bound address, else (bound
to the wildcard) the host's primary address of that family.
"""

from __future__ import annotations

import socket
from typing import Any

import attr

from twisted.application import service
from twisted.logger import Logger, LogLevel

from webrtcstack.deadline import DeadlineTimer
from webrtcstack.config import Endpoint, StackConfig
from webrtcstack.stun.binding import BindingHandler
from webrtcstack.stun.discovery import Discovery
from webrtcstack.stun.errors import StunDecodeError
from webrtcstack.turn.adapters import dispatch
from webrtcstack.turn.adapters.client_stream import TurnStreamFactory, TurnTcpServer
from webrtcstack.turn.adapters._ratelimit import RateLimitedLog
from webrtcstack.turn.adapters.client_udp import TurnUdpListener, TurnUdpService
from webrtcstack.turn.adapters.relay import RelayReader, SocketRelayOpener
from webrtcstack.turn.auth import CredentialStore
from webrtcstack.turn.engine import TurnEngine, TurnSettings
from webrtcstack.turn.five_tuple import Transport
from webrtcstack.turn.policy import PeerPolicy
from webrtcstack.sockets import ListenerService

__all__ = ["TurnDriver", "TurnEngineService", "build_turn_services", "relay_addresses", "load_users",
           "Shard", "shard_settings"]

log = Logger()
_WILDCARD = {4: "0.0.0.0", 6: "::"}
_PROBE = {4: "192.0.2.1", 6: "2001:db8::1"}
#: What each authentication failure reason means, for the log line.
AUTH_FAILURE_TEXT = {
    "no_credentials": "request without credentials (the normal first step: challenged with 401)",
    "bad_request": "malformed credentials (400)",
    "stale_nonce": "stale or foreign nonce (438)",
    "wrong_realm": "wrong realm (401)",
    "unknown_user": "unknown user (401)",
    "expired": "expired REST credential (401)",
    "algorithm": "password algorithm not allowed for this user (401)",
    "bad_integrity": "wrong password / bad MESSAGE-INTEGRITY (401)",
}
#: Reasons that are part of normal operation: logged at debug, not warn.
ROUTINE_AUTH_FAILURES = frozenset({"no_credentials", "stale_nonce"})


def primary_address(family: int) -> str | None:
    """The source address the kernel would use toward the Internet (no packet is sent)."""
    sock = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((_PROBE[family], 9))
        return str(sock.getsockname()[0])
    except OSError:
        return None
    finally:
        sock.close()


def relay_addresses(config: StackConfig) -> tuple[dict[int, str], dict[int, str]]:
    """``(bind host per family, advertised host per family)`` for relay sockets."""
    turn = config.turn
    bind: dict[int, str] = {}
    advertised: dict[int, str] = {}
    families = {4, 6}
    for ip in turn.relay_ip:
        bind[6 if ":" in ip else 4] = ip
    for public, private in turn.external_ip:
        family = 6 if ":" in public else 4
        if private and family not in bind:
            bind[family] = private
        advertised[family] = public
    for ep in turn.listen:
        family = 6 if ":" in ep.host else 4
        if family not in bind and ep.host != _WILDCARD[family]:
            bind[family] = ep.host
    if turn.relay_ip:
        # Explicit relay addresses: relay only in those families.
        families = {6 if ":" in ip else 4 for ip in turn.relay_ip}
    for family in sorted(families):
        host = bind.setdefault(family, _WILDCARD[family])
        if family not in advertised:
            if host != _WILDCARD[family]:
                advertised[family] = host
            else:
                found = primary_address(family)
                if found is None:
                    del bind[family]
                    continue
                advertised[family] = found
    return bind, advertised


class Shard:
    """This process's part of ``[turn] workers``: index ``index`` of ``count``.

    Shard 0 is the main process.  Each shard relays from its own slice of
    ``relay_ports`` (so no two processes draw the same port) and holds
    ``ceil(total_quota / count)`` allocations at most; ``user_quota`` holds
    per process.
    """

    def __init__(self, index: int = 0, count: int = 1) -> None:
        if not 0 <= index < count:
            raise ValueError(f"shard {index} of {count}")
        self.index = index
        self.count = count

    def relay_ports(self, ports: tuple[int, int]) -> tuple[int, int]:
        """This shard's slice of the relay port range (the slices are disjoint and cover it)."""
        low, high = ports
        size = high - low + 1
        if size < self.count:
            raise ValueError(f"[turn] relay_ports {low}-{high} has fewer ports than [turn] workers = {self.count}")
        start = low + size * self.index // self.count
        end = low + size * (self.index + 1) // self.count - 1
        return start, end

    def total_quota(self, total: int) -> int:
        """This shard's share of ``total_quota`` (rounded up)."""
        return -(-total // self.count)


def shard_settings(settings: TurnSettings, shard: Shard, ports: tuple[int, int]) -> TurnSettings:
    """``settings`` with this shard's relay ports and total quota (``ports``: the whole range)."""
    return attr.evolve(settings, relay_ports=shard.relay_ports(ports),
                       total_quota=shard.total_quota(settings.total_quota))


def load_users(config: StackConfig) -> list[tuple[str, str]]:
    """Static users from ``users`` and ``users_file`` (the file wins on a clash).

    :raises webrtcstack.config.ConfigError: a ``users_file`` that cannot be read or has a bad line.
    """
    from webrtcstack.config import read_users_file

    return list(config.turn.users) + list(read_users_file(config))


class TurnDriver:
    """Owns the engine and its one timer; carries packets between sockets and engine."""

    def __init__(self, engine: TurnEngine, reactor: Any, binding: BindingHandler | None = None,
                 *, log_interval_s: float = 10.0) -> None:
        self.engine = engine
        self.reactor = reactor
        if binding is not None:
            engine.binding = binding
        #: TCP/TLS connections open now (clients' and RFC 6062 peers'), and the most allowed
        self.stream_connections = 0
        self.max_stream_connections = 10000
        self.stopped = False
        #: This process's part of ``[turn] workers`` (None: the only process).
        self.shard: Shard | None = None
        #: ``[turn] nat_discovery`` (RFC 5780): the answers' core, and each of its four addresses' send
        self.discovery: Discovery | None = None
        self.discovery_senders: dict[tuple[str, int], Any] = {}
        #: the one timer, at the engine's next deadline
        self.timer = DeadlineTimer(reactor, self._fire)
        self.log_interval_s = log_interval_s
        self._auth_logs: dict[str, RateLimitedLog] = {}
        self._malformed_logs: dict[str, RateLimitedLog] = {}
        engine.auth_failure_listener = self.auth_failed

    def auth_failed(self, reason: str, client_host: str, now: float) -> None:
        """One line per reason at most every ``log_interval_s`` (issue 5); the rest are counted."""
        limited = self._auth_logs.get(reason)
        if limited is None:
            level = LogLevel.debug if reason in ROUTINE_AUTH_FAILURES else LogLevel.warn
            limited = self._auth_logs[reason] = RateLimitedLog(log, self.reactor, self.log_interval_s, level)
        limited.warn("TURN auth failure {reason}: {text}, last from {client}", reason=reason,
                     text=AUTH_FAILURE_TEXT.get(reason, reason), client=client_host)

    def handle_client(self, five_tuple: Any, data: bytes, to_client: Any, now: float) -> bool:
        """One datagram or stream frame from a client (everything but the UDP fast paths).

        The reply, if any, is sent with ``to_client`` and the timer re-armed.

        :returns: False if the bytes were malformed (dropped, counted and
            logged at most once per ``log_interval_s`` per transport); a
            stream protocol then closes its connection.
        """
        try:
            reply = self.handle_message(five_tuple, data, to_client, now)
        except StunDecodeError as e:
            self.malformed(five_tuple, e)
            return False
        if reply is not None:
            to_client(reply)
            self.rearm()
        return True

    @property
    def binding(self) -> BindingHandler:
        """The engine's STUN Binding handler (its counters feed the metrics)."""
        return self.engine.binding

    def handle_message(self, five_tuple: Any, data: bytes, to_client: Any, now: float) -> bytes | None:
        """The reply to one message from a client, not sent and with the timer not re-armed.

        For a caller that batches: the UDP listener sends a wake-up's replies
        together and re-arms once per wake-up.

        :raises StunDecodeError: the bytes are malformed (see :meth:`malformed`).
        """
        return self.engine.handle_client_message(five_tuple, data, to_client, now=now)

    def malformed(self, five_tuple: Any, error: StunDecodeError) -> None:
        """Count a malformed message, and log it at most once per ``log_interval_s`` per transport."""
        self.engine.counters.drop("malformed")
        transport = five_tuple[0].name.lower()
        limited = self._malformed_logs.get(transport)
        if limited is None:
            limited = self._malformed_logs[transport] = RateLimitedLog(log, self.reactor, self.log_interval_s)
        limited.warn("STUN/TURN {transport}: dropped a malformed packet from {source}: {error}",
                     transport=transport, source=five_tuple[1], error=str(error))

    def connection_lost(self, five_tuple: Any) -> None:
        """A stream client went away."""
        self.engine.handle_connection_lost(five_tuple, now=self.reactor.seconds())
        self.rearm()

    def rearm(self) -> None:
        """Point the one timer at the engine's next deadline."""
        self.timer.arm(self.engine.next_deadline())

    def _fire(self, deadline: float) -> None:
        self.engine.handle_timer(now=max(deadline, self.reactor.seconds()))
        self.rearm()

    def stop(self) -> None:
        """Cancel the timer and end every allocation (closing every relay)."""
        self.stopped = True
        self.timer.stop()
        self.engine.close()


class TurnEngineService(service.Service):
    """Stops the driver (timer, allocations, relays) when the stack stops."""

    def __init__(self, driver: TurnDriver) -> None:
        self.driver = driver
        self.setName("turn engine")

    def stopService(self) -> None:
        service.Service.stopService(self)
        self.driver.stop()


def build_engine(config: StackConfig, reactor: Any, auth_secrets: tuple[str, ...], *, shard: Shard | None = None,
                 nonce_key: bytes | None = None) -> TurnDriver:
    """The engine and its driver, from the config.

    :param shard: this process's shard (``[turn] workers``); None: the only one.
    :param nonce_key: the nonce HMAC key, shared by every worker so that a
        nonce one process issued is good in the others; None: a random one.
    """
    turn = config.turn
    bind, advertised = relay_addresses(config)
    settings = TurnSettings.from_section(turn, bind, advertised)
    if shard is not None:
        settings = shard_settings(settings, shard, turn.relay_ports)
    credentials = CredentialStore(turn.realm, load_users(config), auth_secrets, turn.rest_api_separator)
    policy = PeerPolicy(allow_loopback=turn.allow_loopback_peers, denied=turn.denied_peers,
                        allowed=turn.allowed_peers)
    opener = SocketRelayOpener(reactor)
    engine = TurnEngine(settings, credentials, policy, opener, nonce_key=nonce_key)
    driver = TurnDriver(engine, reactor)
    opener.driver = driver
    driver.max_stream_connections = turn.max_tcp_connections
    return driver


def discovery_pair(config: StackConfig) -> tuple[tuple[str, str], tuple[int, int]] | None:
    """``[turn] nat_discovery``'s two IP addresses and two ports (None when it is off).

    The first two ``listen`` endpoints of one family give the addresses and the
    primary port; the alternate port is ``nat_discovery_port``, or the primary + 1.
    The config check has made sure they exist (:func:`webrtcstack.config._check_consistency`).
    """
    turn = config.turn
    if not turn.nat_discovery:
        return None
    for family in (4, 6):
        eps = [ep for ep in turn.listen if ep.family == family and ep.host not in ("0.0.0.0", "::")]
        if len(eps) >= 2:
            port = eps[0].port
            return (eps[0].host, eps[1].host), (port, turn.nat_discovery_port or port + 1)
    return None


def build_turn_services(config: StackConfig, reactor: Any, auth_secrets: tuple[str, ...], *,
                        shard: Shard | None = None, nonce_key: bytes | None = None) -> list[service.IService]:
    """The STUN/TURN listeners (UDP + TCP per ``listen`` endpoint) and the engine service.

    With a ``shard`` of more than one, every listener is bound with
    ``SO_REUSEPORT`` (the other workers bind the same addresses) and the
    engine gets the shard's relay ports and quota (see :class:`Shard`).
    """
    driver = build_engine(config, reactor, auth_secrets, shard=shard, nonce_key=nonce_key)
    driver.shard = shard
    reuse = shard is not None and shard.count > 1
    services: list[service.IService] = [TurnEngineService(driver)]
    pair = discovery_pair(config)
    if pair is not None:
        ips, ports = pair
        driver.discovery = Discovery(driver.engine.binding, ips, ports)
        for ip in ips:  # the two alternate-port sockets: STUN Binding only
            services.append(TurnUdpService(driver, Endpoint(ip, ports[1]), stun_only=True))
    for ep in config.turn.listen:
        services.append(TurnUdpService(driver, ep, reuse_port=reuse))
        factory = TurnStreamFactory(driver, transport_kind=Transport.TCP,
                                    max_connections=config.turn.max_tcp_connections,
                                    max_frame_bytes=config.turn.max_frame_bytes)
        services.append(ListenerService(reactor, "tcp", ep, factory, what="STUN/TURN", reuse_port=reuse,
                                        transport=TurnTcpServer))
    # The per-packet sockets, served by the epoll reactor without the legacy log context.
    for kind in (TurnUdpListener, RelayReader, TurnTcpServer):
        dispatch.register(reactor, kind)
    if config.turn.users_db:
        from webrtcstack.turn.adapters.userdb import UserDbService, open_user_db

        services.append(UserDbService(open_user_db(config.turn.users_db, config.redis.url, config.redis.ca_file),
                                      driver.engine.credentials,
                                      reactor, config.turn.users_db_poll_seconds, driver.engine.counters))
    if config.turn.kernel_offload != "off" and not reuse:
        from webrtcstack.turn.adapters.offload import OffloadService

        # after the engine's service, so it stops first: its routes come down before the allocations end
        services.append(OffloadService(config, driver, reactor))
    log.info("TURN relays bind {bind}, advertise {advertised}", bind=driver.engine.settings.relay_hosts,
             advertised=driver.engine.settings.advertised_hosts)
    return services
