"""Wiring: builder functions that turn a :class:`StackConfig` into services.

One child service per listener, all under one :class:`StackService` (a
MultiService that also reloads on SIGHUP, drains on SIGTERM and talks to
systemd).  TLS listeners wrap the same factories the plain ones serve:
HTTPS/WSS wraps the web Site, TURN over TLS wraps the TURN stream factory,
and a port in both ``[turn] tls_listen`` and ``[http] tls_listen`` gets one
listener that picks a side per connection (:mod:`webrtcstack.ops.demux`).  Nothing binds
until ``startService``; ``stopService`` closes every port and cancels every
timer, so a stopped stack leaves nothing behind.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import secrets
from typing import Any

from twisted.application import service
from twisted.logger import Logger

from webrtcstack.config import ConfigError, Endpoint, StackConfig
from webrtcstack.ops.demux import DemuxFactory
from webrtcstack.ops.health import build_ops_site
from webrtcstack.ops.lifecycle import StackService
from webrtcstack.ops.metrics import make_registry
from webrtcstack.ops.redirect import build_redirect_site
from webrtcstack.ops.runtime import StackRuntime
from webrtcstack.sockets import ConnectionBudget, LimitedFactory, ListenerService, raise_open_files_limit
from webrtcstack.tls import ALPN_HTTP, ALPN_TURN, CertificateStore, tls_factory

log = Logger()


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.endswith(".localhost")


def config_warnings(config: StackConfig) -> list[str]:
    """What is valid but will not do what an operator most likely wants (``check-config`` prints these; the log too)."""
    out: list[str] = _turn_warnings(config) + _certificate_warnings(config)
    if not (config.http.enabled and config.rooms.enabled):
        return out
    camera = ("browsers give a page the camera only over HTTPS (or on localhost), so a call from another "
              "machine will not start; set [http] tls_listen and an https:// public_url (docs/deploy.md)")
    url = config.http.public_url
    if url.startswith("http://"):
        from urllib.parse import urlsplit

        if not _loopback(urlsplit(url).hostname or ""):
            out.append(f"[http] public_url {url}: {camera}")
    elif not url and not config.http.tls_listen and any(not _loopback(ep.host) for ep in config.http.listen):
        out.append(f"[http] listen {' '.join(str(ep) for ep in config.http.listen)} is plain HTTP beyond this machine: {camera}")
    return out


def _private(host: str) -> bool:
    """A private (RFC 1918, ULA, link-local, CGNAT) address, which no client beyond this network can reach."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _PRIVATE_NETS)


_PRIVATE_NETS = tuple(ipaddress.ip_network(net) for net in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10"))


def _turn_warnings(config: StackConfig) -> list[str]:
    """TURN relaying on a private address with no public one to tell clients (1:1 NAT without external_ip)."""
    turn = config.turn
    if not turn.enabled or turn.external_ip:
        return []
    private = [ip for ip in turn.relay_ip if _private(ip)]
    if not turn.relay_ip:
        private = [ep.host for ep in turn.listen if _private(ep.host)]
    if not private:
        return []
    return [f"[turn] relays on the private address {', '.join(dict.fromkeys(private))} and external_ip is not set: "
            "clients beyond this network get relayed addresses they cannot reach; behind 1:1 NAT set "
            "[turn] external_ip = PUBLIC/PRIVATE (docs/deploy.md, section 6)"]


def _certificate_warnings(config: StackConfig) -> list[str]:
    """A certificate file that does not name ``public_url``'s host (browsers will refuse the page)."""
    from urllib.parse import urlsplit

    from webrtcstack.tls import certificate_covers, describe_certificate

    url = config.http.public_url
    if not (config.tls_enabled and not config.tls.acme and config.tls.certificate and url.startswith("https://")):
        return []
    host = urlsplit(url).hostname or ""
    try:
        with open(config.tls.certificate, "rb") as f:
            info = describe_certificate(f.read())
    except (OSError, ValueError):
        return []  # check_certificates reports the file itself
    if certificate_covers(info.names, host):
        return []
    return [f"[tls] certificate {config.tls.certificate} is for {', '.join(info.names) or info.subject}, not for "
            f"{host} ([http] public_url): browsers will refuse the page; get one for {host} (or set [tls] acme = yes)"]


def describe_listeners(config: StackConfig) -> list[str]:
    """What would listen where, one line each (for ``--check`` and ``check-config``)."""
    lines: list[str] = []
    shared = set(config.turn.tls_listen) & set(config.http.tls_listen) if config.turn.enabled and config.http.enabled else set()
    if config.turn.enabled:
        for ep in config.turn.listen:
            lines.append(f"STUN/TURN  udp+tcp  {ep}")
        for ep in config.turn.tls_listen:
            if ep in shared:
                lines.append(f"TURN/TLS + HTTPS/WSS  tcp  {ep}  (one port: ALPN stun.turn / http/1.1, else first bytes)")
            else:
                lines.append(f"TURN/TLS   tcp      {ep}")
            if config.turn.dtls:
                lines.append(f"TURN/DTLS  udp      {ep}  (DTLS {config.turn.dtls_min_version} and up)")
        if config.turn.nat_discovery:
            from webrtcstack.turn.adapters.driver import discovery_pair

            pair = discovery_pair(config)
            if pair is not None:
                for ip in pair[0]:
                    lines.append(f"STUN (RFC 5780 alternate port)  udp  {Endpoint(ip, pair[1][1])}")
        if config.turn.kernel_offload != "off":
            where = ", ".join(config.turn.kernel_offload_interfaces) or "every interface that is up"
            lines.append(f"TURN kernel offload ({config.turn.kernel_offload}): XDP on {where}")
        if config.turn.users_db:
            where = config.turn.users_db
            if where.startswith(("redis://", "unix://")):
                from webrtcstack.cluster.resp import parse_url

                where = parse_url(where).display()  # no password in the listing
            lines.append(f"TURN users_db  {where}")
        low, high = config.turn.relay_ports
        relay_ips = ", ".join(config.turn.relay_ip) or "0.0.0.0, ::"
        lines.append(f"TURN relay udp      {relay_ips} ports {low}-{high}")
        if config.turn.workers > 1:
            lines.append(f"TURN workers        {config.turn.workers} processes share the udp+tcp listeners "
                         f"(SO_REUSEPORT); TLS in the main one")
    if config.http.enabled:
        for ep in config.http.listen:
            lines.append(f"HTTP/WS    tcp      {ep}")
        for ep in config.http.tls_listen:
            if ep not in shared:
                lines.append(f"HTTPS/WSS  tcp      {ep}")
        for ep in config.http.redirect_listen:
            lines.append(f"HTTP->HTTPS redirect tcp {ep}")
        if config.signaling.enabled:
            for ep in config.signaling.listen:
                lines.append(f"collider   tcp      {ep}")
    if config.metrics.enabled:
        for ep in config.metrics.listen:
            lines.append(f"metrics    tcp      {ep}  (/metrics /healthz /status)")
    if not lines:
        lines.append("nothing enabled")
    return lines


def check_certificates(config: StackConfig) -> str | None:
    """Load the ``[tls]`` files as the stack would; a one-line description, or None without TLS.

    :raises webrtcstack.tls.TlsError: when they cannot be used.
    """
    if not config.tls_enabled:
        return None
    if config.tls.acme:
        from webrtcstack.config import acme_names
        from webrtcstack.state import state_dir

        if config.tls.acme_ca_file:
            _ca_certificates(config, "tls", "acme_ca_file")
        return (f"certificate from the ACME server {config.tls.acme_directory} for {', '.join(acme_names(config))}, "
                f"kept in {os.path.join(state_dir(config), 'acme')}")
    info = CertificateStore(config.tls.certificate, config.tls.private_key).load()
    return f"certificate {info.subject} for {', '.join(info.names) or '(no names)'}"


def _kept(config: StackConfig, name: str, what: str, otherwise: str) -> str | None:
    """The secret ``name`` kept in the state directory (made on first use); None, with a warning, when it cannot be."""
    from webrtcstack.state import load_or_create_secret, state_dir

    directory = state_dir(config)
    try:
        return load_or_create_secret(directory, name)
    except OSError as e:
        log.warn("cannot keep the {what} in {dir} ({error}); {otherwise}", what=what, dir=directory,
                 error=e.strerror or e, otherwise=otherwise)
        return None


def kept_admin_token(config: StackConfig) -> str | None:
    """The sessions admin token kept in the state directory; None when the API is off or it cannot be kept."""
    from webrtcstack.state import ADMIN_TOKEN_FILE

    if not config.metrics.enabled:
        return None
    return _kept(config, ADMIN_TOKEN_FILE, "admin token", "the sessions admin API is off: set [stack] state_dir")


def kept_auth_secrets(config: StackConfig) -> tuple[str, ...] | None:
    """The secret kept in the state directory when the config sets none (made on first use).

    None, with a warning, when the state directory cannot be written: the
    process then makes up a secret for this run only.
    """
    from webrtcstack.state import SECRET_FILE

    if config.turn.static_auth_secret:
        return None
    secret = _kept(config, SECRET_FILE, "TURN secret", "this run makes up its own, so credentials from "
                   "`webrtcstack turn-credentials` will not work: set [stack] state_dir or [turn] static_auth_secret")
    return None if secret is None else (secret,)


def effective_auth_secrets(config: StackConfig) -> tuple[str, ...]:
    """The TURN REST secrets in force: the configured ones, or one made now.

    The room server mints ICE credentials from the first; the TURN server
    accepts any of them.
    """
    if config.turn.static_auth_secret:
        return config.turn.static_auth_secret
    return (secrets.token_urlsafe(32),)


class ProcessSetupService(service.Service):
    """Process-wide set-up at start: raise the open files limit; freeze start-up objects for the GC.

    :param reactor: used to run :func:`gc.freeze` once the reactor runs, i.e.
        after every sibling service has built its long-lived objects.
    """

    def __init__(self, config: StackConfig, reactor: Any = None) -> None:
        self.config = config
        self.reactor = reactor
        self.setName("process")

    def startService(self) -> None:
        soft, hard = raise_open_files_limit(self.config.stack.max_open_files)
        log.info("open files limit {soft} (hard {hard})", soft=soft, hard=hard)
        if self.reactor is not None:
            # Tens of thousands of objects made at start-up (modules, the config, tables) live as
            # long as the process; moved to the permanent generation they are no longer walked
            # by every full collection, which otherwise costs each allocation several µs.
            self.reactor.callWhenRunning(gc.freeze)
        service.Service.startService(self)


class CallbackService(service.Service):
    """Calls ``on_stop`` when stopped (used to cancel a component's timers)."""

    def __init__(self, name: str, on_stop: Any) -> None:
        self.setName(name)
        self.on_stop = on_stop

    def stopService(self) -> Any:
        service.Service.stopService(self)
        return self.on_stop()


def _turn_driver(turn_services: list[service.IService]) -> Any:
    """The TURN driver (engine + timer) among the TURN driver's services."""
    for svc in turn_services:
        driver = getattr(svc, "driver", None)
        if driver is not None:
            return driver
    raise RuntimeError("the TURN services carry no driver")


def _wire_turn(runtime: StackRuntime, config: StackConfig, driver: Any, auth_secrets: tuple[str, ...]) -> Any:
    """Hook the TURN engine into metrics, reload and drain; return a maker of TLS stream factories."""
    from webrtcstack.turn.adapters.client_stream import TurnStreamFactory
    from webrtcstack.turn.five_tuple import Transport

    engine = driver.engine
    runtime.turn_engine = engine
    runtime.turn_counters.append(engine.counters)
    runtime.busy_counters.append(engine.allocation_count)

    def drain() -> None:
        engine.draining = True

    runtime.drainers.append(drain)
    shard = getattr(driver, "shard", None)
    runtime.reloaders.append(lambda new: _reconfigure_turn(engine, new, reload_auth_secrets(new, auth_secrets),
                                                           shard=shard))

    def make_tls_factory() -> Any:
        return TurnStreamFactory(driver, transport_kind=Transport.TLS,
                                 max_connections=config.turn.max_tcp_connections,
                                 max_frame_bytes=config.turn.max_frame_bytes)

    make_tls_factory.driver = driver  # type: ignore[attr-defined]  # [turn] dtls listens beside TLS
    return make_tls_factory


def _reconfigure_turn(engine: Any, config: StackConfig, auth_secrets: tuple[str, ...], *, shard: Any = None) -> None:
    """Users, secrets, peer lists, quotas and limits from a reloaded config, for new requests.

    :param shard: the process's :class:`~webrtcstack.turn.adapters.driver.Shard`
        (``[turn] workers``), whose share of ``total_quota`` applies.
    """
    from webrtcstack.turn.adapters.driver import load_users
    from webrtcstack.turn.engine import TurnSettings
    from webrtcstack.turn.policy import PeerPolicy

    turn = config.turn
    settings = TurnSettings.from_section(turn, engine.settings.relay_hosts, engine.settings.advertised_hosts)
    if shard is not None:
        import attr

        settings = attr.evolve(settings, total_quota=shard.total_quota(settings.total_quota))
    policy = PeerPolicy(allow_loopback=turn.allow_loopback_peers, denied=turn.denied_peers, allowed=turn.allowed_peers)
    engine.reconfigure(settings, load_users(config), auth_secrets, policy)


def reload_auth_secrets(config: StackConfig, running: tuple[str, ...]) -> tuple[str, ...]:
    """The secrets after a reload: the configured ones, or (none configured) the generated ones kept."""
    return config.turn.static_auth_secret or running


def _resize_budgets(runtime: StackRuntime, config: StackConfig) -> None:
    """Reload: ``[http] max_connections`` applies to connections accepted from now on."""
    budgets = runtime.connection_budgets
    if "http" in budgets:
        budgets["http"].limit = config.http.max_connections
        budgets["http"].per_address = config.http.max_connections_per_ip
        budgets["http"].unlimited = config.http.trusted_proxies
    if "one-port" in budgets:
        budgets["one-port"].limit = config.http.max_connections + config.turn.max_tcp_connections


def _wire_web(runtime: StackRuntime, app: Any, auth_secrets: tuple[str, ...]) -> None:
    """Hook the room server and signaling into metrics, reload and drain."""
    hub = app.hub
    runtime.hubs.append(hub)
    runtime.hub_runners.append(app.runner)
    if app.signaling_factory is not None:
        runtime.signaling_factories.append(app.signaling_factory)
    runtime.http_sites.extend(site for site in (app.site, app.collider_site) if site is not None)
    if hub.rooms is not None:
        runtime.room_storages.append(hub.storage)

    def drain() -> None:
        # The room server refuses joins while the hub says so; open sockets carry on.
        hub.draining = True

    runtime.drainers.append(drain)
    runtime.busy_counters.append(lambda: _sockets_in_calls(app))
    runtime.reloaders.append(lambda config: app.apply_config(config, reload_auth_secrets(config, auth_secrets)))


def build_service(config: StackConfig, reactor: Any, *, notifier: Any = None,
                  install_signals: bool = True, auth_secrets: tuple[str, ...] | None = None,
                  admin_token: str | None = None) -> StackService:
    """The whole stack: one :class:`StackService`, one child per listener.

    Binds nothing until started.  Raises :class:`webrtcstack.tls.TlsError`
    when a TLS listener is configured and the certificate cannot be loaded.

    :param notifier: systemd notify (default: from ``NOTIFY_SOCKET``).
    :param install_signals: handle SIGHUP while running (tests turn it off).
    :param admin_token: the sessions admin API's bearer token (twistd passes the kept one,
        :func:`kept_admin_token`); None: the API answers 503.
    :param auth_secrets: the TURN REST secrets when the config sets none (twistd passes the
        kept one, see :mod:`webrtcstack.state`); default: one made now.
    """
    for warning in config_warnings(config):
        log.warn("config: {warning}", warning=warning)
    runtime = StackRuntime(config, reactor)
    runtime.admin_token = admin_token
    top = StackService(runtime, reactor, notifier=notifier, install_signals=install_signals)
    ProcessSetupService(config, reactor).setServiceParent(top)
    auth_secrets = config.turn.static_auth_secret or auth_secrets or effective_auth_secrets(config)
    children: list[service.IService] = []

    store = None
    acme_board = None
    acme_service = None
    if config.tls_enabled and config.tls.acme:
        acme_board, acme_service = _wire_acme(runtime, config, reactor)
        store = runtime.cert_store
    elif config.tls_enabled:
        store = CertificateStore(config.tls.certificate, config.tls.private_key)
        info = store.load()
        runtime.cert_store = store
        log.info("certificate {subject} for {names}", subject=info.subject, names=",".join(info.names))

    turn_tls_maker = None
    if config.turn.enabled:
        from webrtcstack.turn.adapters.driver import Shard, build_turn_services

        shard = None
        nonce_key = None
        if config.turn.workers > 1:
            from webrtcstack.turn.adapters.workers import check_workers_config

            check_workers_config(config)
            shard = Shard(0, config.turn.workers)
            # One nonce key for every worker: a nonce stays good if the kernel moves a client.
            nonce_key = os.urandom(32)
        turn_services = list(build_turn_services(config, reactor, auth_secrets, shard=shard, nonce_key=nonce_key))
        children += turn_services
        turn_tls_maker = _wire_turn(runtime, config, _turn_driver(turn_services), auth_secrets)
        if nonce_key is not None:
            children.append(_wire_workers(runtime, config, reactor, nonce_key, auth_secrets))

    app = None
    http_budget = None
    if config.http.enabled:
        from webrtcstack.web import build_web

        storage = None
        if config.redis.url:
            from webrtcstack.cluster.records import ClusterStorage

            storage = ClusterStorage()
        app = build_web(config, reactor, auth_secrets, storage=storage)
        _wire_web(runtime, app, auth_secrets)
        children.append(CallbackService("web-timers", app.stop))
        # One budget for every HTTP(S) listener: [http] max_connections counts them all.
        http_budget = ConnectionBudget(config.http.max_connections, config.http.max_connections_per_ip,
                                       unlimited=config.http.trusted_proxies)
        runtime.connection_budgets["http"] = http_budget
        runtime.reloaders.append(lambda new: _resize_budgets(runtime, new))
        for ep in config.http.listen:
            children.append(ListenerService(reactor, "tcp", ep, LimitedFactory(app.site, http_budget), what="http"))
        if config.signaling.enabled and app.collider_site is not None:
            for ep in config.signaling.listen:
                children.append(ListenerService(reactor, "tcp", ep, LimitedFactory(app.collider_site, http_budget),
                                                what="collider"))
        if config.http.redirect_listen:
            redirect = build_redirect_site(config, lambda: _https_port(runtime), acme_board)
            for ep in config.http.redirect_listen:
                children.append(ListenerService(reactor, "tcp", ep, redirect, what="https-redirect"))

    if store is not None:
        children += _tls_listeners(config, reactor, store, runtime, app, turn_tls_maker, http_budget)
    if acme_service is not None:
        children.append(acme_service)  # after the listeners: the redirect port answers the challenges

    if config.redis.url:
        children.insert(0, _wire_cluster(runtime, config, reactor, app))  # up first, down last

    if config.metrics.enabled:
        site = build_ops_site(runtime, make_registry(runtime))
        for ep in config.metrics.listen:
            children.append(ListenerService(reactor, "tcp", ep, site, what="metrics", optional=True))

    for child in children:
        child.setServiceParent(top)
        if hasattr(child, "endpoint") and hasattr(child, "bound_port"):
            runtime.listeners.append(child)
    return top


class ClusterService(service.Service):
    """Keeps this node's lease in Redis while the stack runs (``[redis] url``)."""

    def __init__(self, node: Any) -> None:
        self.setName("cluster")
        self.node = node

    def startService(self) -> None:
        service.Service.startService(self)
        self.node.start()
        if self.node.rooms is not None:
            self.node.rooms.inbox_client.start()

    def stopService(self) -> Any:
        service.Service.stopService(self)
        d = self.node.rooms.stop() if self.node.rooms is not None else None
        if d is None:
            return self.node.stop()
        return d.addBoth(lambda _: self.node.stop())


def node_listen_addresses(config: StackConfig) -> list[str]:
    """Every address this process listens on (for the default node id)."""
    out = []
    for section, key in (("turn", "listen"), ("turn", "tls_listen"), ("http", "listen"), ("http", "tls_listen"),
                         ("signaling", "listen"), ("metrics", "listen")):
        sec = getattr(config, section)
        if getattr(sec, "enabled", True):
            out += [f"{section}.{key}={ep}" for ep in getattr(sec, key)]
    return out


def _wire_cluster(runtime: StackRuntime, config: StackConfig, reactor: Any, app: Any) -> service.IService:
    import socket as _socket

    from webrtcstack.cluster.client import RedisClient
    from webrtcstack.cluster.lease import NodeLease, default_node_id
    from webrtcstack.cluster.node import ClusterNode
    from webrtcstack.cluster.resp import parse_url

    cfg = config.redis
    node_id = cfg.node_id or default_node_id(_socket.gethostname(), node_listen_addresses(config))
    password = None
    if cfg.password_file:
        try:
            with open(cfg.password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"cannot read the password file {cfg.password_file}: {e.strerror}",
                              filename=config.filename, section="redis", key="password_file") from None
    url = parse_url(cfg.url)
    tls = _redis_tls(config, url.host) if url.scheme == "rediss" and cfg.ca_file else None
    client = RedisClient(url, reactor, name="commands", node_id=node_id, password=password, tls=tls)

    engine = runtime.turn_engine
    turn_view = None
    if engine is not None:
        from webrtcstack.cluster.turnview import TurnClusterView

        turn_view = TurnClusterView(node_id)
        engine.elsewhere = turn_view

    def record() -> dict[str, Any]:
        out = {"public_url": config.http.public_url, "turn": [str(ep) for ep in config.turn.listen] if config.turn.enabled else [],
               "allocations": runtime.allocations(), "websockets": runtime.websockets()}
        if engine is not None:
            out.update(_turn_report(runtime.config, engine))
        return out

    def conflict(why: str) -> None:
        # Two live processes with one node id would corrupt each other's state: stop, and exit non-zero.
        import os as _os
        reactor.addSystemEventTrigger("after", "shutdown", _os._exit, 1)
        reactor.callLater(0, reactor.stop)

    lease = NodeLease(node_id, lease_s=cfg.lease_seconds, renew_s=cfg.renew_seconds)
    node = ClusterNode(client, lease, reactor, prefix=cfg.key_prefix, record=record, on_conflict=conflict)
    runtime.cluster = node
    if turn_view is not None:
        node.on_nodes.append(lambda nodes: turn_view.update(nodes, engine.allocation_count()))
        if app is not None and app.room_resource is not None:
            def cluster_ice(own: tuple[list[str], list[str]]) -> tuple[list[str], list[str]]:
                return turn_view.ice_urls(engine.allocation_count(), engine.accepting(), own, runtime.config.redis.ice_nodes)

            app.room_resource.cluster_ice = cluster_ice
    rooms = None
    if app is not None:
        from webrtcstack.cluster.rooms import ClusterRooms

        inbox = RedisClient(url, reactor, name="inbox", node_id=node_id, password=password, tls=tls)
        rooms = ClusterRooms(client, inbox, node_id=node_id, incarnation=lambda: lease.incarnation, runner=app.runner,
                             storage=app.hub.storage, prefix=cfg.key_prefix, reactor=reactor)
        app.runner.cluster = rooms
        app.runner.unavailable = node.not_ready_reason
        # Per-room and per-client byte limits hold on the shared records; a process-wide
        # ceiling cannot be kept per process when records move between nodes.
        app.hub.buffers.limit = 1 << 62
        node.rooms = rooms
    log.info("cluster: node {node} sharing state through {url}", node=node_id, url=client.url.display())
    return ClusterService(node)


def _ca_certificates(config: StackConfig, section: str, key: str) -> list[Any]:
    """The CA certificates in the PEM file a ``*ca_file`` key names.

    :raises ConfigError: naming the key when the file cannot be read or holds no certificate.
    """
    from twisted.internet.ssl import Certificate

    path = getattr(getattr(config, section), key)

    def fail(why: str) -> ConfigError:
        return ConfigError(f"{path}: {why}", filename=config.filename, section=section, key=key)

    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise fail(f"cannot read it: {e.strerror}") from None
    end = b"-----END CERTIFICATE-----"
    blocks = [block + end for block in text.split(end) if b"-----BEGIN CERTIFICATE-----" in block]
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except Exception as e:
        raise fail(f"not a PEM certificate ({e})") from None
    if not certificates:
        raise fail("holds no PEM certificate")
    return certificates


def _redis_tls(config: StackConfig, host: str) -> Any:
    """Client TLS options for ``rediss://`` trusting the CAs in ``[redis] ca_file`` (checked at start)."""
    from twisted.internet.ssl import optionsForClientTLS, trustRootFromCertificates

    certificates = _ca_certificates(config, "redis", "ca_file")
    return optionsForClientTLS(host, trustRoot=trustRootFromCertificates(certificates))


def _wire_acme(runtime: StackRuntime, config: StackConfig, reactor: Any) -> tuple[Any, Any]:
    """``[tls] acme = yes``: the store on the state directory's ACME files, and the service renewing them.

    :raises ConfigError: ``acme_ca_file`` unusable, or the state directory not writable.
    """
    from webrtcstack.certs.acme_flow import Http01Board
    from webrtcstack.certs.service import AcmeService, prepare_acme
    from webrtcstack.state import state_dir

    if config.tls.acme_ca_file:
        _ca_certificates(config, "tls", "acme_ca_file")
    directory = state_dir(config)
    try:
        store, plan, files = prepare_acme(config, directory)
    except OSError as e:
        raise ConfigError(f"acme = yes keeps its account key and certificates in {directory}, which cannot be "
                          f"written ({e.strerror or e}); set [stack] state_dir", filename=config.filename,
                          section="tls", key="acme") from None
    runtime.cert_store = store
    runtime.acme = plan
    board = Http01Board()
    return board, AcmeService(config, reactor, store, plan, files, board)


def _sockets_in_calls(app: Any) -> int:
    """The signaling sockets a drain waits for: those in a call (their room has another socket here).

    Someone alone in a room is not in a call, and does not hold a stop for
    ``drain_seconds``.  With ``[redis]`` the peer may be on another node, so
    every socket counts.
    """
    runner = app.runner
    if getattr(runner, "cluster", None) is not None:
        return int(app.hub.counters.open_ws)
    per_room: dict[str, int] = {}
    for room_id, _client_id in runner.sockets:
        per_room[room_id] = per_room.get(room_id, 0) + 1
    return sum(n for n in per_room.values() if n > 1)


def _turn_report(config: StackConfig, engine: Any) -> dict[str, Any]:
    """This node's TURN part of its lease record (see webrtcstack.cluster.turnview)."""
    from webrtcstack.cluster.turnview import turn_report
    from webrtcstack.rooms.credentials import ice_host_for, ice_urls

    servers = []
    for ep in config.turn.listen:
        host = ice_host_for(ep, config, "")
        if host is not None:
            servers += [("udp", host, ep.port), ("tcp", host, ep.port)]
    turn, stun = ice_urls(config, "")
    return turn_report(engine.allocation_count(), engine.allocations_by_user(), engine.accepting(), servers, turn, stun)


def _wire_workers(runtime: StackRuntime, config: StackConfig, reactor: Any, nonce_key: bytes,
                  auth_secrets: tuple[str, ...]) -> service.IService:
    """The TURN worker processes (shards 1..N-1), hooked into metrics, reload and drain."""
    from webrtcstack.turn.adapters.workers import TurnWorkersService

    workers = TurnWorkersService(config, reactor, nonce_key=nonce_key, auth_secrets=auth_secrets)
    # In shard order after the main process's own counters (shard 0).
    runtime.turn_counters.extend(w.counters for w in workers.workers)
    runtime.turn_workers.extend(workers.workers)
    runtime.busy_counters.append(workers.busy)
    runtime.drainers.append(workers.drain)
    runtime.reloaders.append(workers.reload)
    return workers


def build_worker_service(config: StackConfig, reactor: Any, shard: Any, *, nonce_key: bytes,
                         auth_secrets: tuple[str, ...]) -> tuple[StackService, Any]:
    """One TURN worker process's stack: the ``[turn] listen`` sockets of shard ``shard`` only.

    Reload (SIGHUP) and drain work as in the main process; no systemd, no
    HTTP, no metrics listener (the parent reports our counters).

    :returns: the top service and the TURN driver.
    """
    from webrtcstack.ops.systemd import SystemdNotifier
    from webrtcstack.turn.adapters.driver import build_turn_services

    runtime = StackRuntime(config, reactor)  # (the main process has logged the config warnings)
    top = StackService(runtime, reactor, notifier=SystemdNotifier(reactor, environ={}))
    ProcessSetupService(config, reactor).setServiceParent(top)
    secrets_in_force = config.turn.static_auth_secret or auth_secrets
    turn_services = build_turn_services(config, reactor, secrets_in_force, shard=shard, nonce_key=nonce_key)
    driver = _turn_driver(turn_services)
    _wire_turn(runtime, config, driver, secrets_in_force)
    for child in turn_services:
        child.setServiceParent(top)
        if hasattr(child, "endpoint") and hasattr(child, "bound_port"):
            runtime.listeners.append(child)
    return top, driver


def _https_port(runtime: StackRuntime) -> int | None:
    """The port the first HTTPS listener bound, for redirects."""
    for svc in runtime.listeners:
        if getattr(svc, "what", "") in ("https", "https+turns") and getattr(svc, "port", None) is not None:
            return int(svc.bound_port())
    return None


def _tls_listeners(config: StackConfig, reactor: Any, store: CertificateStore, runtime: StackRuntime,
                   app: Any, turn_tls_maker: Any, http_budget: ConnectionBudget | None) -> list[service.IService]:
    """HTTPS/WSS, TURN over TLS, and one-port listeners where both share an endpoint."""
    out: list[service.IService] = []
    turn_eps = list(config.turn.tls_listen) if config.turn.enabled else []
    http_eps = list(config.http.tls_listen) if app is not None else []
    shared = [ep for ep in turn_eps if ep in http_eps]
    if turn_eps and turn_tls_maker is None:
        raise RuntimeError("the TURN driver offers no stream factory for TLS")
    for ep in shared:
        demux = DemuxFactory(turn_tls_maker(), app.site, reactor)
        runtime.demux_factories.append(demux)
        # Web and TURN connections share this port: bound by both limits together.
        budget = runtime.connection_budgets.setdefault(
            "one-port", ConnectionBudget(config.http.max_connections + config.turn.max_tcp_connections))
        factory = LimitedFactory(tls_factory(store, (ALPN_TURN, ALPN_HTTP), demux), budget)
        out.append(ListenerService(reactor, "tcp", ep, factory, what="https+turns"))
    for ep in turn_eps:
        if ep not in shared:
            factory = tls_factory(store, (ALPN_TURN,), turn_tls_maker())
            out.append(ListenerService(reactor, "tcp", ep, factory, what="turns"))
    if turn_eps and config.turn.dtls:
        from webrtcstack.turn.adapters.dtls import DtlsService

        for ep in turn_eps:  # the same port over UDP (one-port endpoints too: HTTPS is TCP only)
            out.append(DtlsService(turn_tls_maker.driver, ep, store, config.turn.max_tcp_connections,
                                   legacy=config.turn.dtls_min_version == "1.0"))
    for ep in http_eps:
        if ep not in shared:
            factory = tls_factory(store, (ALPN_HTTP,), app.site)
            if http_budget is not None:
                factory = LimitedFactory(factory, http_budget)
            out.append(ListenerService(reactor, "tcp", ep, factory, what="https"))
    return out
