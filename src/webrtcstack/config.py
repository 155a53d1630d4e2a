"""The stack's configuration: one ini file parsed into frozen attrs objects.

The schema below is the single source of truth: every key has a type (a parser
from text), a default written as ini text (so defaults go through the same
parser as user values), a range where one applies, and a one-line description.
``etc/stack.ini`` and ``docs/configuration.md`` list the same keys; a test
checks that they do.

Errors name the file, the section, the key and the line, and say what is wrong
and what is allowed (:class:`ConfigError`).  Unknown sections and keys are
errors, so a typo never silently falls back to a default.

This module is part of the sans-IO core: it reads no sockets and imports no
reactor.  :func:`load_config` is a thin wrapper that reads a file and calls
:func:`parse_config`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Any

import attr

__all__ = [
    "ConfigError",
    "Endpoint",
    "StackConfig",
    "load_config",
    "parse_config",
    "schema",
    "render_default_ini",
]


class ConfigError(Exception):
    """A configuration file is wrong; the message names where and why."""

    def __init__(
        self,
        message: str,
        *,
        filename: str = "<config>",
        section: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.filename = filename
        self.section = section
        self.key = key
        self.line = line
        self.reason = message
        where = filename
        if line is not None:
            where += f":{line}"
        if section is not None:
            where += f": [{section}]"
            if key is not None:
                where += f" {key}"
        super().__init__(f"{where}: {message}")


class _ValueError(Exception):
    """Raised by a value parser; turned into a ConfigError with the location."""


# --------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Endpoint:
    """A ``host:port`` to listen on or advertise; ``host`` has no brackets."""

    host: str
    port: int

    @property
    def family(self) -> int:
        """4 or 6, from the host's spelling (a name counts as 4)."""
        return 6 if ":" in self.host else 4

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _split_list(text: str) -> list[str]:
    """Split a list value on commas, whitespace and newlines."""
    return [item for item in re.split(r"[\s,]+", text.strip()) if item]


def parse_bool(text: str) -> bool:
    """``yes/no``, ``true/false``, ``on/off``, ``1/0`` (any case)."""
    lowered = text.strip().lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    raise _ValueError(f"{text.strip()!r} is not a boolean; use yes or no")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise _ValueError(f"{text.strip()!r} is not a whole number; allowed: {low} to {high}") from None
        if not low <= value <= high:
            raise _ValueError(f"{value} is out of range; allowed: {low} to {high}")
        return value

    parse.__doc__ = f"a whole number from {low} to {high}"
    return parse


def _text(max_len: int = 1024) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if len(value) > max_len:
            raise _ValueError(f"is {len(value)} characters long; at most {max_len} allowed")
        return value

    parse.__doc__ = "text"
    return parse


def parse_users_db(value: str) -> str:
    """``sqlite:///absolute/path``, ``redis://…``/``unix://…`` (coturn's Redis keys), ``redis`` (the
    ``[redis] url``), or empty (no database).  Returns the value."""
    value = value.strip()
    if not value or value == "redis":
        return value
    if value.startswith("sqlite:///"):
        if len(value) <= len("sqlite:///"):
            raise _ValueError("sqlite:/// needs a file path after it, e.g. sqlite:///var/lib/webrtcstack/turndb")
        return value
    if value.startswith(("redis://", "rediss://", "unix://")):
        from webrtcstack.cluster.resp import parse_url

        try:
            parse_url(value)
        except ValueError as e:
            raise _ValueError(str(e)) from None
        return value
    raise _ValueError(f"{value!r}: expected sqlite:///absolute/path, redis://host:port/db, rediss://…, unix:///path "
                      "or redis")


def parse_interface_names(value: str) -> tuple[str, ...]:
    """Network interface names, separated by spaces or commas (Linux: 1 to 15 characters, no / or space)."""
    names = tuple(n for n in re.split(r"[\s,]+", value.strip()) if n)
    for name in names:
        if len(name) > 15 or "/" in name or name in (".", ".."):
            raise _ValueError(f"{name!r} is not an interface name (1 to 15 characters, no '/')")
    return names


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise _ValueError(f"{text.strip()!r} is not allowed; use one of: {', '.join(choices)}")
        return value

    parse.__doc__ = "one of " + ", ".join(choices)
    return parse


def parse_host(text: str) -> str:
    """An IP address (v4 or v6, brackets optional) or a DNS name."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _HOSTNAME.match(host):
        return host
    raise _ValueError(f"{text.strip()!r} is not an IP address or host name")


def parse_option_hosts(text: str) -> tuple[str, ...]:
    """Host names or addresses, each optionally with ``:port`` (``[v6]:port`` for IPv6), lower case."""
    out = []
    for item in _split_list(text):
        host, port = item, ""
        m = re.match(r"^(\[[^\]]+\]|[^:]+):(\d{1,5})$", item)
        if m:
            host, port = m.group(1), m.group(2)
            if not 0 < int(port) < 65536:
                raise _ValueError(f"{item!r}: the port must be 1-65535")
        parse_host(host)
        out.append(item.lower())
    return tuple(out)


def parse_ip(text: str) -> str:
    """An IP address (v4 or v6, brackets optional)."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise _ValueError(f"{text.strip()!r} is not an IP address") from None


def parse_endpoint(text: str) -> Endpoint:
    """``host:port``; IPv6 as ``[::]:3478``; port 1-65535 (0 asks for any free port)."""
    item = text.strip()
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", item) or re.match(r"^([^:\[\]]+):(\d+)$", item)
    if not m:
        raise _ValueError(f"{item!r} is not host:port (write IPv6 as [::]:3478)")
    host = parse_host(m.group(1))
    port = int(m.group(2))
    if port > 65535:
        raise _ValueError(f"port {port} in {item!r} is out of range; allowed: 0 to 65535")
    return Endpoint(host, port)


def parse_endpoints(text: str) -> tuple[Endpoint, ...]:
    """A list of ``host:port`` separated by commas, spaces or newlines; may be empty."""
    return tuple(parse_endpoint(item) for item in _split_list(text))


def parse_ips(text: str) -> tuple[str, ...]:
    """A list of IP addresses; may be empty."""
    return tuple(parse_ip(item) for item in _split_list(text))


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of CIDR networks (``10.0.0.0/8``, ``fd00::/8``) or single addresses."""
    result = []
    for item in _split_list(text):
        try:
            result.append(ipaddress.ip_network(item.strip("[]") if "/" not in item else item, strict=False))
        except ValueError:
            raise _ValueError(f"{item!r} is not a CIDR network such as 10.0.0.0/8 or fd00::/8") from None
    return tuple(result)


def parse_port_range(text: str) -> tuple[int, int]:
    """``low-high``, both 1024-65535, low <= high."""
    m = re.match(r"^\s*(\d+)\s*-\s*(\d+)\s*$", text)
    if not m:
        raise _ValueError(f"{text.strip()!r} is not a port range such as 49152-65535")
    low, high = int(m.group(1)), int(m.group(2))
    if not (1024 <= low <= high <= 65535):
        raise _ValueError(f"{low}-{high} is not allowed; need 1024 <= low <= high <= 65535")
    return (low, high)


def parse_external_ips(text: str) -> tuple[tuple[str, str | None], ...]:
    """coturn style: ``PUBLIC`` or ``PUBLIC/PRIVATE`` (one per address family)."""
    result: list[tuple[str, str | None]] = []
    for item in _split_list(text):
        public, _, private = item.partition("/")
        result.append((parse_ip(public), parse_ip(private) if private else None))
    return tuple(result)


def parse_users(text: str) -> tuple[tuple[str, str], ...]:
    """One ``name:password`` a line (a password of ``0x`` + 32 hex digits is an MD5 key).

    Blank lines and ``#`` comment lines are skipped.  The one parser of users, for ``[turn] users``
    and for ``users_file`` (:func:`read_users_file`); a bad line is an error naming it, never skipped.
    """
    users: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not name or not password:
            raise _ValueError(f"line {number}: {line!r} is not name:password")
        if name in seen:
            raise _ValueError(f"line {number}: user {name!r} is listed twice")
        seen.add(name)
        users.append((name, password))
    return tuple(users)


def parse_secrets(text: str) -> tuple[str, ...]:
    """One or more shared secrets, separated by spaces, commas or newlines."""
    secrets_ = tuple(_split_list(text))
    for secret in secrets_:
        if len(secret) < 8:
            raise _ValueError("a secret shorter than 8 characters is too easy to guess")
    return secrets_


def parse_ice_urls(text: str) -> tuple[str, ...]:
    """ICE server URLs (RFC 7064/7065): ``stun:host[:port]``, ``turn:host[:port][?transport=udp|tcp]``, ``turns:…``."""
    result = []
    for item in _split_list(text):
        if not re.match(r"^(stun|stuns|turn|turns):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\?transport=(udp|tcp))?$", item):
            raise _ValueError(f"{item!r} is not an ICE server URL such as turn:turn.example.org:3478?transport=udp "
                              "or stun:stun.example.org")
        result.append(item)
    return tuple(result)


def parse_origins(text: str) -> tuple[str, ...]:
    """A list of origins such as ``https://example.org`` (``*`` allows any)."""
    result = []
    for item in _split_list(text):
        if item != "*" and not re.match(r"^https?://[^/\s]+$", item):
            raise _ValueError(f"{item!r} is not an origin such as https://example.org or *")
        result.append(item.lower())
    return tuple(result)


def parse_url(text: str) -> str:
    """An ``http://`` or ``https://`` base URL with no path, or empty."""
    value = text.strip().rstrip("/")
    if value and not re.match(r"^https?://[^/\s]+$", value):
        raise _ValueError(f"{value!r} is not a base URL such as https://call.example.org")
    return value


def parse_https_url(text: str) -> str:
    """An ``https://`` URL (the ACME directory)."""
    value = text.strip()
    if not re.match(r"^https://[^/\s]+(/\S*)?$", value):
        raise _ValueError(f"{value!r} is not an https:// URL")
    return value


def parse_email(text: str) -> str:
    """An e-mail address, or empty."""
    value = text.strip()
    if value and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
        raise _ValueError(f"{value!r} is not an e-mail address")
    return value


def parse_cert_names(text: str) -> tuple[str, ...]:
    """Host names (or IP addresses) for a certificate, lower case."""
    out = []
    for item in _split_list(text):
        parse_host(item)
        out.append(item.lower())
    return tuple(dict.fromkeys(out))


def parse_redis_url(text: str) -> str:
    """empty (in memory), or `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS), `unix:///path[?db=N]`"""
    value = text.strip()
    if not value:
        return ""
    from webrtcstack.cluster.resp import parse_url

    try:
        parse_url(value)
    except ValueError as e:
        raise _ValueError(str(e)) from None
    return value


def parse_node_id(text: str) -> str:
    """empty (derived from the host name and listen addresses), or 1 to 64 letters, digits, `.`, `-`, `_`"""
    value = text.strip()
    if value and not re.match(r"^[A-Za-z0-9._-]{1,64}$", value):
        raise _ValueError(f"{value!r} may use only letters, digits, '.', '-' and '_' (1 to 64)")
    return value


def parse_key_prefix(text: str) -> str:
    """text of 1 to 64 printable characters with no spaces"""
    value = text.strip()
    if not re.match(r"^[!-~]{1,64}$", value):
        raise _ValueError(f"{value!r} must be 1 to 64 printable characters with no spaces")
    return value


# --------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------

_META = "webrtcstack"


def _key(default: str, parser: Callable[[str], Any], doc: str, *, kind: str | None = None,
         restart: bool = False) -> Any:
    """Declare one config key: its default as ini text, its parser and its doc line.

    :param restart: a changed value takes effect only on a restart (it
        decides which sockets exist, or is read once at start); a SIGHUP
        reload reports it as such and keeps the running value.  Every other
        key is applied by the reload.
    """
    return attr.ib(
        default=parser(default),
        metadata={_META: {"default": default, "parser": parser, "doc": doc, "restart": restart,
                          "kind": kind or (parser.__doc__ or "").split("\n")[0].replace("``", "`").rstrip(".")}},
    )


_bool = parse_bool
_port_count = _int_in(0, 1_000_000)


@attr.s(frozen=True, slots=True)
class StackSection:
    """``[stack]``: process-wide settings."""

    max_open_files: int = _key("20000", _int_in(256, 1_048_576), "the soft limit on open files the process raises itself to at start (capped by the hard limit)", restart=True)
    drain_seconds: int = _key("30", _int_in(0, 86400), "on SIGTERM, refuse new allocations and joins and wait up to this long for existing ones to end")
    log_format: str = _key("text", _choice("text", "json"), "log lines as text, or one JSON object a line", restart=True)
    state_dir: str = _key("", _text(4096), "where the stack keeps what it made itself (the TURN secret when static_auth_secret is empty); empty: $STATE_DIRECTORY under systemd, else /var/lib/webrtcstack if it exists, else ~/.local/state/webrtcstack", restart=True)
    max_buffered_bytes: int = _key("268435456", _int_in(1_048_576, 1 << 40), "the most bytes of clients' queued and stored messages the process holds in all; past it, messages are refused with an error")


@attr.s(frozen=True, slots=True)
class TurnSection:
    """``[turn]``: the STUN/TURN server (STUN is served on the same ports)."""

    enabled: bool = _key("yes", _bool, "serve STUN and TURN", restart=True)
    listen: tuple[Endpoint, ...] = _key("0.0.0.0:3478 [::]:3478", parse_endpoints, "host:port list; each gets UDP and TCP (IPv6 as [::]:3478)", restart=True)
    tls_listen: tuple[Endpoint, ...] = _key("", parse_endpoints, "host:port list for TURN over TLS (usually :5349 or :443); needs [tls]", restart=True)
    software: str = _key("webrtcstack", _text(128), "the SOFTWARE attribute in every response (empty to send none)")
    realm: str = _key("webrtcstack", _text(256), "the long-term credential realm")
    users: tuple[tuple[str, str], ...] = _key("", parse_users, "static users, one name:password a line (indent continuation lines); 0x<32 hex> is a precomputed MD5 key")
    users_file: str = _key("", _text(4096), "a file with more name:password lines (read at start and on reload)")
    static_auth_secret: tuple[str, ...] = _key("", parse_secrets, "coturn-style REST API shared secrets (several for rotation); empty: one is made on the first start and kept in [stack] state_dir")
    rest_api_separator: str = _key(":", _text(1), "the separator between expiry and name in REST API usernames")
    relay_ports: tuple[int, int] = _key("49152-65535", parse_port_range, "the UDP port range relayed addresses are taken from", restart=True)
    relay_ip: tuple[str, ...] = _key("", parse_ips, "addresses relay sockets bind to, one per family; empty: 0.0.0.0 and ::", restart=True)
    external_ip: tuple[tuple[str, str | None], ...] = _key("", parse_external_ips, "public address advertised in XOR-RELAYED-ADDRESS, or public/private for 1:1 NAT", restart=True)
    allow_loopback_peers: bool = _key("no", _bool, "allow relaying to 127.0.0.0/8 and ::1 (tests only)")
    denied_peers: tuple[Any, ...] = _key("", parse_networks, "extra CIDR ranges peers may not be in")
    allowed_peers: tuple[Any, ...] = _key("", parse_networks, "CIDR ranges always allowed as peers (wins over every deny)")
    default_lifetime_s: int = _key("600", _int_in(60, 86400), "allocation lifetime when the client asks for none")
    max_lifetime_s: int = _key("3600", _int_in(60, 86400), "the longest allocation lifetime granted")
    permission_lifetime_s: int = _key("300", _int_in(30, 3600), "permission lifetime (RFC 8656: 300)")
    channel_lifetime_s: int = _key("600", _int_in(60, 3600), "channel binding lifetime (RFC 8656: 600)")
    nonce_lifetime_s: int = _key("600", _int_in(30, 86400), "how long a nonce is valid before 438 Stale Nonce")
    user_quota: int = _key("20", _int_in(0, 1_000_000), "allocations at once per user (0: no per-user limit)")
    total_quota: int = _key("10000", _int_in(1, 1_000_000), "allocations at once in all")
    max_permissions: int = _key("10", _int_in(1, 10000), "permissions per allocation")
    max_channels: int = _key("64", _int_in(1, 4096), "channel bindings per allocation")
    legacy_channel_numbers: bool = _key("yes", _bool, "also accept channel numbers 0x5000-0x7FFE (RFC 5766; coturn's clients pick from them); no: RFC 8656's 0x4000-0x4FFF only")
    max_bps: int = _key("0", _int_in(0, 10_000_000_000), "relayed bits per second per allocation, each direction (0: no limit)")
    mobility: bool = _key("no", _bool, "RFC 8016 mobility: a UDP client that asks gets a MOBILITY-TICKET and may move its allocation to a new address with a Refresh carrying it; no: such requests get 405 Mobility Forbidden")
    tcp_relay: bool = _key("no", _bool, "RFC 6062 TCP relay: a client on a TCP or TLS connection may Allocate with REQUESTED-TRANSPORT TCP, then Connect to peers and take their incoming connections (ConnectionAttempt), each on its own data connection (ConnectionBind); no: such an Allocate gets 442 Unsupported Transport Protocol. Needs workers = 1")
    tcp_relay_max_connections: int = _key("64", _int_in(1, 10000), "peer TCP connections (made with Connect or accepted) one TCP allocation may hold at once; past it Connect gets 486 and new incoming ones are closed")
    tcp_relay_buffer_bytes: int = _key("65536", _int_in(1024, 16 * 1024 * 1024), "bytes held from a peer TCP connection until its client sends ConnectionBind; past it the server stops reading (TCP flow control holds the peer back, nothing is lost)")
    max_tcp_connections: int = _key("10000", _int_in(1, 1_000_000), "TCP/TLS connections at once: clients' (control and RFC 6062 data connections) and relayed peer TCP connections together", restart=True)
    max_frame_bytes: int = _key("65540", _int_in(548, 65540), "the largest STUN or ChannelData frame accepted on a stream", restart=True)
    workers: int = _key("1", _int_in(1, 16), "processes serving the [turn] listen sockets (SO_REUSEPORT; 1: this process only); relay_ports and total_quota are split between them, user_quota holds per process", restart=True)
    unauthenticated_replies_per_second: int = _key("20", _int_in(1, 100000), "401 replies per source address per second; more are dropped")
    dtls: bool = _key("no", _bool, "TURN over DTLS 1.2 (RFC 7350): every tls_listen address also takes DTLS on UDP at the same port, with the [tls] certificate (as coturn does); stateless cookies answer a new address", restart=True)
    dtls_min_version: str = _key("1.2", _choice("1.2", "1.0"), "the oldest DTLS accepted: 1.2; or 1.0 for old clients (coturn's turnutils_uclient picks DTLS 1.0 half of the time), which needs AES-CBC-SHA suites and OpenSSL security level 0", restart=True)
    users_db: str = _key("", parse_users_db, "TURN users and REST secrets in coturn's schemas: sqlite:///path (a coturn turndb works as it is), redis://host:port/db, rediss://… (TLS, trusting [redis] ca_file) or unix:///path (coturn's Redis keys), or redis (the [redis] url); read in a thread and re-read every users_db_poll_seconds. Manage it with webrtcstack turn-user / turn-secret / turn-db", restart=True)
    users_db_poll_seconds: int = _key("5", _int_in(1, 3600), "how often users_db is read again (a user added or deleted takes effect within this)", restart=True)
    nat_discovery: bool = _key("no", _bool, "RFC 5780 NAT behaviour discovery over UDP: Binding answers carry RESPONSE-ORIGIN and OTHER-ADDRESS and honour CHANGE-REQUEST and RESPONSE-PORT. Needs two listen addresses of one family with the same port; the alternate port (nat_discovery_port) is bound on both, for STUN only", restart=True)
    nat_discovery_port: int = _key("0", _int_in(0, 65535), "the alternate port of nat_discovery (0: the listen port + 1)", restart=True)
    kernel_offload: str = _key("off", _choice("off", "auto", "on"), "forward established UDP channels (IPv4) in the kernel with an XDP program: off; auto (used when the process may load BPF programs and clang is installed, else one log line and the Python path); on (refuse to start without it, naming what is missing). See docs/turn.md", restart=True)
    kernel_offload_interfaces: tuple[str, ...] = _key("", parse_interface_names, "interfaces the XDP program is attached to; empty: every interface that is up", restart=True)
    kernel_offload_max_entries: int = _key("65536", _int_in(16, 4_194_304), "channels the kernel maps hold at once (each direction); channels past it stay on the Python path", restart=True)


@attr.s(frozen=True, slots=True)
class HttpSection:
    """``[http]``: the room server, the call page and WebSocket signaling."""

    enabled: bool = _key("yes", _bool, "serve the room server, the call page and signaling", restart=True)
    listen: tuple[Endpoint, ...] = _key("127.0.0.1:8080", parse_endpoints, "host:port list for plain HTTP", restart=True)
    tls_listen: tuple[Endpoint, ...] = _key("", parse_endpoints, "host:port list for HTTPS/WSS; needs [tls]; the same port as [turn] tls_listen serves both (one-port mode)", restart=True)
    redirect_listen: tuple[Endpoint, ...] = _key("", parse_endpoints, "host:port list for plain HTTP that only redirects to HTTPS (usually :80); needs tls_listen", restart=True)
    acme_webroot: str = _key("", _text(4096), "a directory whose .well-known/acme-challenge/ files the redirect_listen port serves as they are (certbot --webroot -w DIR renews while the stack holds port 80); empty: none", restart=True)
    public_url: str = _key("", parse_url, "the base URL users reach us at (https://call.example.org); empty: taken from each request's Host")
    max_connections: int = _key("10000", _int_in(1, 1_000_000), "HTTP and WebSocket connections at once")
    max_connections_per_ip: int = _key("100", _int_in(1, 1_000_000), "HTTP and WebSocket connections at once from one client address (so one address cannot hold every slot)")
    max_body_bytes: int = _key("262144", _int_in(1024, 64 * 1_048_576), "the largest request body; a bigger Content-Length gets 413 before the body is read, a chunked body is cut off at this size")
    writes_per_second_per_ip: int = _key("20", _int_in(1, 1_000_000), "POST/PUT/DELETE requests (joins, messages, leaves, collider posts) per second from one client address, also the burst; more get 429")
    trusted_proxies: tuple[Any, ...] = _key("", parse_networks, "addresses or CIDR blocks of reverse proxies in front of us (127.0.0.1, 10.0.0.0/8) whose Forwarded / X-Forwarded-For and X-Forwarded-Proto headers are believed: per-address limits, logs and the https check then use the real client; empty: no headers believed")
    access_log: str = _key("on", _choice("on", "anonymised", "off"), "a line per HTTP request at info: on (combined log format: address, path, user agent), anonymised (address cut to its /24 or /48, no client ids, query or user agent), or off")
    request_timeout_seconds: int = _key("15", _int_in(1, 3600), "a request (line, headers and body) must arrive whole within this long of its first byte, and a connection may idle this long between requests; else 408 and close")


@attr.s(frozen=True, slots=True)
class TlsSection:
    """``[tls]``: the certificate for HTTPS, WSS and TURN over TLS."""

    certificate: str = _key("", _text(4096), "PEM file with the certificate and its chain (empty with acme = yes)")
    private_key: str = _key("", _text(4096), "PEM file with the private key (empty with acme = yes)")
    acme: bool = _key("no", _bool, "get and renew the certificate automatically over ACME (Let's Encrypt): for public_url's host and names, answering http-01 on [http] redirect_listen (port 80); kept in [stack] state_dir", restart=True)
    acme_directory: str = _key("https://acme-v02.api.letsencrypt.org/directory", parse_https_url, "the ACME server's directory URL (Let's Encrypt's staging: https://acme-staging-v02.api.letsencrypt.org/directory)", restart=True)
    acme_email: str = _key("", parse_email, "a contact address the ACME server may write to about the certificates (expiry warnings); empty: none", restart=True)
    acme_ca_file: str = _key("", _text(4096), "a PEM file of CA certificates to trust for the ACME server's own HTTPS (a private ACME server); empty: the system's", restart=True)
    names: tuple[str, ...] = _key("", parse_cert_names, "more host names for the ACME certificate, beside public_url's host", restart=True)


@attr.s(frozen=True, slots=True)
class RoomsSection:
    """``[rooms]``: the apprtc-compatible room server."""

    enabled: bool = _key("yes", _bool, "serve the room API and the call page", restart=True)
    capacity: int = _key("2", _int_in(2, 6), "members of a group call on our page (a full mesh: each member sends its video to every other, so 4 to 6 at most); 2: our page makes two-person rooms as apprtc does. Rooms of apprtc's clients always hold 2")
    room_ttl_seconds: int = _key("86400", _int_in(60, 30 * 86400), "a room with no change for this long is removed (never during a call: two members with live sockets)")
    max_rooms: int = _key("10000", _int_in(1, 10_000_000), "rooms at once; a join beyond it gets ERROR")
    max_message_bytes: int = _key("65536", _int_in(256, 1_048_576), "the largest signaling message accepted")
    max_stored_messages: int = _key("256", _int_in(1, 10000), "messages stored for a client waiting alone in a room")
    max_stored_bytes: int = _key("1048576", _int_in(1024, 1 << 30), "UTF-8 bytes of messages stored in one room (also bounds the next joiner's /join answer)")
    turn_credential_ttl_seconds: int = _key("86400", _int_in(60, 30 * 86400), "lifetime of the TURN REST credentials handed to clients")
    bypass_join_confirmation: bool = _key("no", _bool, "join at once instead of showing the join button")
    header_message: str = _key("", _text(512), "a message shown at the top of the call page")
    extra_ice_urls: tuple[str, ...] = _key("", parse_ice_urls, "other STUN/TURN servers handed out after ours in /v1alpha/iceconfig (e.g. an existing coturn: turn:turn.example.org:3478?transport=udp); turn: and turns: URLs get REST credentials from extra_ice_secret")
    extra_ice_secret: str = _key("", _text(4096), "the REST API secret (coturn's static-auth-secret) of the extra_ice_urls TURN servers; empty: ours ([turn] static_auth_secret)")
    extra_ice_username: str = _key("", _text(512), "a fixed TURN user name for the extra_ice_urls TURN servers (a coturn user of lt-cred-mech), instead of REST credentials; needs extra_ice_credential")
    extra_ice_credential: str = _key("", _text(512), "the password of extra_ice_username (every page gets it: give that user a quota)")
    allowed_option_hosts: tuple[str, ...] = _key("", parse_option_hosts, "hosts (host or host:port) that the page options wshpp and ts (with wstls) may name; empty: none, the page only uses our own signaling and ICE servers")


@attr.s(frozen=True, slots=True)
class SignalingSection:
    """``[signaling]``: the collider-compatible WebSocket signaling."""

    enabled: bool = _key("yes", _bool, "serve WebSocket signaling at /ws on the HTTP site", restart=True)
    listen: tuple[Endpoint, ...] = _key("", parse_endpoints, "extra host:port list serving collider's exact paths (/ws, /status, /<room>/<client>)", restart=True)
    allowed_origins: tuple[str, ...] = _key("", parse_origins, "origins allowed to open a WebSocket; empty: the site's own origin and localhost")
    register_timeout_seconds: int = _key("10", _int_in(1, 3600), "how long a client may stay unregistered before it is removed (collider: 10)")
    max_queued_messages: int = _key("1024", _int_in(1, 100000), "messages queued per client (collider: 1024)")
    max_queued_bytes: int = _key("1048576", _int_in(1024, 1 << 30), "UTF-8 bytes of messages queued per client")
    max_message_bytes: int = _key("65536", _int_in(256, 1_048_576), "the largest WebSocket message accepted")
    max_connections: int = _key("10000", _int_in(1, 1_000_000), "WebSocket connections at once")
    max_connections_per_ip: int = _key("50", _int_in(1, 1_000_000), "WebSocket connections at once from one address")
    messages_per_second: int = _key("50", _int_in(1, 100000), "messages (and pings) a client may send per second, on average")
    message_burst: int = _key("100", _int_in(1, 1_000_000), "messages (and pings) a client may send at once above the average rate (the token bucket's size)")
    max_send_buffer_bytes: int = _key("1048576", _int_in(65536, 1 << 30), "bytes a socket that does not read may have waiting beyond the kernel's and Twisted's buffers; past it the socket is closed (4009)")
    ping_interval_seconds: int = _key("30", _int_in(0, 3600), "idle WebSocket ping interval (0: no pings)")


@attr.s(frozen=True, slots=True)
class RedisSection:
    """``[redis]``: share state with other nodes through one Redis (empty `url`: this process alone, in memory). See docs/scaling.md."""

    url: str = _key("", parse_redis_url, "where Redis is; empty keeps everything in this process (the default). A password may be in the URL or in password_file", restart=True)
    password_file: str = _key("", _text(4096), "a file whose first line is the Redis password (used when the URL has none)", restart=True)
    ca_file: str = _key("", _text(4096), "for rediss://: a PEM file of the CA certificates that sign Redis's certificate (empty: the system's trusted CAs)", restart=True)
    key_prefix: str = _key("webrtcstack:", parse_key_prefix, "put before every key this stack writes (several stacks may share one Redis with different prefixes)", restart=True)
    node_id: str = _key("", parse_node_id, "this node's name in the cluster; empty: derived from the host name and the listen addresses. Two live nodes with one id is an error", restart=True)
    lease_seconds: int = _key("10", _int_in(2, 3600), "a node that has not renewed its lease for this long is dead to the others (and fences itself)", restart=True)
    renew_seconds: int = _key("2", _int_in(1, 1800), "how often a node renews its lease (at most half of lease_seconds)", restart=True)
    ice_nodes: int = _key("2", _int_in(1, 64), "how many live nodes' TURN URLs one /v1alpha/iceconfig answer lists, least loaded first (a browser allocates on every one listed)")


@attr.s(frozen=True, slots=True)
class MetricsSection:
    """``[metrics]``: Prometheus `/metrics`, `/healthz` and `/status` on their own listener."""

    enabled: bool = _key("yes", _bool, "serve /metrics, /healthz and /status", restart=True)
    listen: tuple[Endpoint, ...] = _key("127.0.0.1:9641", parse_endpoints, "host:port list; keep it private (loopback or an internal network)", restart=True)


_SECTIONS: dict[str, type] = {
    "stack": StackSection,
    "turn": TurnSection,
    "http": HttpSection,
    "tls": TlsSection,
    "rooms": RoomsSection,
    "signaling": SignalingSection,
    "redis": RedisSection,
    "metrics": MetricsSection,
}


@attr.s(frozen=True, slots=True)
class StackConfig:
    """The whole validated configuration."""

    stack: StackSection = attr.ib(factory=StackSection)
    turn: TurnSection = attr.ib(factory=TurnSection)
    http: HttpSection = attr.ib(factory=HttpSection)
    tls: TlsSection = attr.ib(factory=TlsSection)
    rooms: RoomsSection = attr.ib(factory=RoomsSection)
    signaling: SignalingSection = attr.ib(factory=SignalingSection)
    redis: RedisSection = attr.ib(factory=RedisSection)
    metrics: MetricsSection = attr.ib(factory=MetricsSection)
    filename: str = attr.ib(default="<defaults>")

    @property
    def tls_enabled(self) -> bool:
        """Whether any TLS listener is configured."""
        return bool(self.turn.tls_listen or self.http.tls_listen)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class KeyInfo:
    """What the schema says about one key (for docs and tests)."""

    section: str
    key: str
    default: str
    kind: str
    doc: str
    restart: bool = False


def schema() -> Iterator[KeyInfo]:
    """Every section and key, in file order."""
    for section, cls in _SECTIONS.items():
        for field in attr.fields(cls):
            meta = field.metadata[_META]
            yield KeyInfo(section, field.name, meta["default"], meta["kind"], meta["doc"], meta["restart"])


def render_default_ini() -> str:
    """The default config file text: every key, its default and a comment."""
    out = [
        "# webrtcstack configuration. Every key is listed with its default.",
        "# Lists are separated by spaces, commas or newlines; continue a value on",
        "# the next line by indenting it.  Docs: docs/configuration.md",
    ]
    for section, cls in _SECTIONS.items():
        out.append("")
        out.append(f"[{section}]")
        for field in attr.fields(cls):
            meta = field.metadata[_META]
            out.append(f"# {meta['doc']}" + (" (restart to change)" if meta["restart"] else ""))
            out.append(f"{field.name} = {meta['default']}".rstrip())
    return "\n".join(out) + "\n"


def render_markdown_reference() -> str:
    """The key reference tables of docs/configuration.md (one per section)."""
    out: list[str] = []
    for section, cls in _SECTIONS.items():
        out.append(f"### [{section}]")
        out.append("")
        out.append((cls.__doc__ or "").split(":", 1)[-1].strip())
        out.append("")
        out.append("| key | default | type | meaning |")
        out.append("|---|---|---|---|")
        for field in attr.fields(cls):
            meta = field.metadata[_META]
            default = f"`{meta['default']}`" if meta["default"] else "(empty)"
            restart = " **Restart to change.**" if meta["restart"] else ""
            out.append(f"| `{field.name}` | {default} | {meta['kind']} | {meta['doc']}{restart} |")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

_SECTION_RE = re.compile(r"^\[([^\]]*)\]\s*$")
_KEY_RE = re.compile(r"^([A-Za-z0-9_.-]+)\s*[=:]\s?(.*)$")


def _read_ini(text: str, filename: str) -> dict[str, dict[str, tuple[str, int]]]:
    """A small ini reader that keeps line numbers (configparser does not)."""
    result: dict[str, dict[str, tuple[str, int]]] = {}
    section: str | None = None
    current: tuple[str, str, int] | None = None  # section, key, line
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if raw[:1] in (" ", "\t") and current is not None:
            sec, key, line = current
            value, _ = result[sec][key]
            result[sec][key] = (value + "\n" + stripped, line)
            continue
        m = _SECTION_RE.match(stripped)
        if m:
            section = m.group(1).strip()
            if section in result:
                raise ConfigError(f"section [{section}] appears twice", filename=filename, section=section, line=number)
            result[section] = {}
            current = None
            continue
        m = _KEY_RE.match(stripped)
        if not m:
            raise ConfigError(
                f"cannot read line {stripped!r}; expected [section] or key = value",
                filename=filename, section=section, line=number,
            )
        if section is None:
            raise ConfigError("a key before any [section]", filename=filename, key=m.group(1), line=number)
        key = m.group(1)
        if key in result[section]:
            raise ConfigError("key appears twice in its section", filename=filename, section=section, key=key, line=number)
        result[section][key] = (m.group(2).strip(), number)
        current = (section, key, number)
    return result


def parse_config(text: str, filename: str = "<config>") -> StackConfig:
    """Parse and validate config text; raise :class:`ConfigError` on any fault."""
    raw = _read_ini(text, filename)
    sections: dict[str, Any] = {}
    for section, keys in raw.items():
        cls = _SECTIONS.get(section)
        if cls is None:
            line = min((ln for _, ln in keys.values()), default=None)
            import difflib

            close = difflib.get_close_matches(section, list(_SECTIONS), n=1, cutoff=0.6)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            raise ConfigError(
                f"unknown section [{section}]{hint}; allowed: {', '.join('[' + s + ']' for s in _SECTIONS)}",
                filename=filename, section=section, line=line,
            )
        fields = {f.name: f for f in attr.fields(cls)}
        values: dict[str, Any] = {}
        for key, (value, line) in keys.items():
            field = fields.get(key)
            if field is None:
                raise ConfigError(_unknown_key(section, key, list(fields)),
                                  filename=filename, section=section, key=key, line=line)
            try:
                values[key] = field.metadata[_META]["parser"](value)
            except _ValueError as e:
                raise ConfigError(str(e), filename=filename, section=section, key=key, line=line) from None
        sections[section] = (cls(**values), {k: ln for k, (_, ln) in keys.items()})
    config = StackConfig(**{name: sec for name, (sec, _) in sections.items()}, filename=filename)
    _check_consistency(config, {name: lines for name, (_, lines) in sections.items()})
    return config


def _unknown_key(section: str, key: str, allowed: list[str]) -> str:
    """Why ``key`` is refused in ``[section]``, with the likeliest fix first.

    A key of another section says where it belongs; a misspelt key (a
    letter dropped, added, swapped or changed) names the key it resembles;
    otherwise the allowed keys are listed.
    """
    import difflib

    if key in allowed:
        return "duplicate key"
    homes = [name for name, cls in _SECTIONS.items() if name != section and key in {f.name for f in attr.fields(cls)}]
    if homes:
        return f"unknown key in [{section}]; it belongs in {' or '.join('[' + h + ']' for h in homes)}"
    close = [k for k in allowed if _similar(k, key)] or difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    others = {f.name: name for name, cls in _SECTIONS.items() if name != section for f in attr.fields(cls)}
    elsewhere = difflib.get_close_matches(key, list(others), n=1, cutoff=0.8)
    if elsewhere:
        return f"unknown key (did you mean {elsewhere[0]}, in [{others[elsewhere[0]]}]?)"
    return f"unknown key; allowed in [{section}]: {', '.join(allowed)}"


def _similar(a: str, b: str) -> bool:
    """A cheap typo test: same letters give or take one, or one is a prefix."""
    if a.startswith(b) or b.startswith(a):
        return True
    if abs(len(a) - len(b)) > 2:
        return False
    return sum(1 for x, y in zip(a, b) if x != y) + abs(len(a) - len(b)) <= 2


def _check_consistency(config: StackConfig, lines: dict[str, dict[str, int]]) -> None:
    """Checks that involve more than one key."""

    def fail(section: str, key: str, message: str) -> None:
        raise ConfigError(message, filename=config.filename, section=section, key=key, line=lines.get(section, {}).get(key))

    turn = config.turn
    if turn.max_lifetime_s < turn.default_lifetime_s:
        fail("turn", "max_lifetime_s", f"{turn.max_lifetime_s} is below default_lifetime_s ({turn.default_lifetime_s})")
    families = [6 if ":" in ip else 4 for ip in turn.relay_ip]
    if len(families) != len(set(families)):
        fail("turn", "relay_ip", "give at most one address per family (one IPv4, one IPv6)")
    if turn.workers > 1:
        for ep in turn.listen:
            if ep.port == 0:
                fail("turn", "listen", f"{ep}: with workers = {turn.workers} every process binds the same port, "
                                       "so port 0 (any free port) is not allowed")
    if turn.nat_discovery and turn.enabled:
        pairs = {family: [ep for ep in turn.listen if ep.family == family and ep.host not in ("0.0.0.0", "::")]
                 for family in (4, 6)}
        usable = [eps for eps in pairs.values() if len(eps) >= 2]
        if not usable:
            fail("turn", "nat_discovery", "needs two [turn] listen addresses of one family (not a wildcard), e.g. "
                                          "listen = 192.0.2.10:3478 192.0.2.11:3478: RFC 5780 answers from the other "
                                          "address when a client asks it to")
        first, second = usable[0][0], usable[0][1]
        if first.port != second.port or first.port == 0:
            fail("turn", "listen", f"{first} and {second}: nat_discovery needs the two addresses on one fixed port")
        alternate = turn.nat_discovery_port or first.port + 1
        if alternate == first.port or alternate > 65535:
            fail("turn", "nat_discovery_port", f"{alternate}: must differ from the listen port {first.port}")
        if turn.workers > 1:
            fail("turn", "nat_discovery", f"needs workers = 1 (it is {turn.workers}): the four RFC 5780 sockets "
                                          "answer for each other")
    if turn.tcp_relay and turn.enabled and turn.workers > 1:
        fail("turn", "tcp_relay", f"needs workers = 1 (it is {turn.workers}): a ConnectionBind comes on a new TCP "
                                  "connection, which the kernel may hand to another process than the one holding "
                                  "its peer connection")
    if turn.dtls and turn.enabled and not turn.tls_listen:
        fail("turn", "dtls", "serves DTLS on the [turn] tls_listen ports, and none is set")
    if turn.users_db == "redis" and not config.redis.url:
        fail("turn", "users_db", "redis names the [redis] url, which is empty: set it, or give users_db a "
                                 "redis://host:port/db URL of its own")
    if turn.kernel_offload != "off" and turn.enabled:
        if turn.workers > 1:
            fail("turn", "kernel_offload", f"{turn.kernel_offload}: one XDP program serves an interface, so the "
                                           f"offload needs workers = 1 (it is {turn.workers})")
        if turn.kernel_offload == "on" and not any(
                ep.host.count(".") == 3 and ep.host != "0.0.0.0" for ep in turn.listen):
            fail("turn", "kernel_offload", "on: the kernel forwards channels of clients that reached a concrete "
                                           "IPv4 listen address, and [turn] listen has none (a wildcard such as "
                                           "0.0.0.0 keeps every channel on the Python path)")
    ext_families = [6 if ":" in pub else 4 for pub, _ in turn.external_ip]
    if len(ext_families) != len(set(ext_families)):
        fail("turn", "external_ip", "give at most one public address per family")
    if config.tls.acme:
        for key in ("certificate", "private_key"):
            if getattr(config.tls, key):
                fail("tls", key, "must be empty with acme = yes: the stack gets its own certificate and keeps it "
                                 "in [stack] state_dir")
        if not config.tls_enabled:
            fail("tls", "acme", "is on but nothing uses a certificate: set [http] tls_listen (or [turn] tls_listen)")
        if not config.http.redirect_listen:
            fail("tls", "acme", "answers the ACME server's http-01 challenges on port 80, so [http] redirect_listen "
                                "must be set (usually 0.0.0.0:80)")
        if not acme_names(config):
            fail("tls", "acme", "needs a host name: set [http] public_url to https://your.host.name (or [tls] names)")
    for key in ("certificate", "private_key"):
        if config.tls_enabled and not config.tls.acme and not getattr(config.tls, key):
            needs = "turn tls_listen" if config.turn.tls_listen else "http tls_listen"
            fail("tls", key, f"is required because {needs} is set")
    if config.redis.renew_seconds * 2 > config.redis.lease_seconds:
        fail("redis", "renew_seconds", f"{config.redis.renew_seconds} is more than half of lease_seconds "
                                       f"({config.redis.lease_seconds}); a lease must survive a missed renewal")
    if bool(config.rooms.extra_ice_username) != bool(config.rooms.extra_ice_credential):
        fail("rooms", "extra_ice_credential" if config.rooms.extra_ice_username else "extra_ice_username",
             "extra_ice_username and extra_ice_credential go together (a fixed TURN user and its password)")
    if (any(u.startswith(("turn:", "turns:")) for u in config.rooms.extra_ice_urls)
            and not config.rooms.extra_ice_secret and not turn.static_auth_secret
            and not config.rooms.extra_ice_username):
        fail("rooms", "extra_ice_secret", "is required for the turn: URLs of extra_ice_urls (their server's REST "
                                          "secret), unless [turn] static_auth_secret is set to the secret both share "
                                          "or extra_ice_username/extra_ice_credential name a fixed user")
    if config.redis.url and config.turn.enabled:
        if not turn.static_auth_secret:
            fail("turn", "static_auth_secret", "is required with [redis] url: every node must accept the TURN "
                                               "credentials any node hands out, so they share one secret")
        if turn.workers > 1:
            fail("turn", "workers", f"{turn.workers}: with [redis] url each node keeps its TURN allocations in one "
                                    "process (the cluster-wide quotas count them there); run one node per core instead")
    if config.http.redirect_listen and not config.http.tls_listen:
        fail("http", "redirect_listen", "redirects to HTTPS, so [http] tls_listen must be set too")
    # One-port mode: a [turn] tls_listen endpoint also in [http] tls_listen is one shared listener.
    shared_tls = set(config.turn.tls_listen) & set(config.http.tls_listen) if config.turn.enabled and config.http.enabled else set()
    all_listen: list[tuple[Endpoint, str, str]] = []
    for section, key in (("turn", "listen"), ("turn", "tls_listen"), ("http", "listen"), ("http", "tls_listen"),
                         ("http", "redirect_listen"), ("signaling", "listen"), ("metrics", "listen")):
        sec = getattr(config, section)
        if getattr(sec, "enabled", True) is False:
            continue
        for ep in getattr(sec, key):
            proto = "udp+tcp" if (section, key) == ("turn", "listen") else "tcp"
            for other_ep, other_proto, other_where in all_listen:
                if (section, key) == ("http", "tls_listen") and other_where == "[turn] tls_listen" and ep in shared_tls:
                    continue
                if ep.port and ep == other_ep and ("tcp" in proto and "tcp" in other_proto):
                    fail(section, key, f"{ep} is also used by {other_where}; each listener needs its own port")
            all_listen.append((ep, proto, f"[{section}] {key}"))


def read_users_file(config: StackConfig) -> tuple[tuple[str, str], ...]:
    """The users of ``[turn] users_file`` (none when it is not set), read with :func:`parse_users`.

    :raises ConfigError: naming the config's ``users_file`` key, the file and the line, when the file
        cannot be read or a line is not ``name:password``.
    """
    path = config.turn.users_file
    if not path:
        return ()

    def fail(why: str) -> ConfigError:
        return ConfigError(f"{path}: {why}", filename=config.filename, section="turn", key="users_file")

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise fail(f"cannot read it: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise fail(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return parse_users(text)
    except _ValueError as e:
        raise fail(str(e)) from None


def acme_names(config: StackConfig) -> tuple[str, ...]:
    """The names an ACME certificate must cover: ``public_url``'s host, then ``[tls] names``."""
    from urllib.parse import urlsplit

    names = []
    if config.http.public_url:
        host = urlsplit(config.http.public_url).hostname
        if host:
            names.append(host.lower())
    names.extend(config.tls.names)
    return tuple(dict.fromkeys(names))


def load_config(path: str) -> StackConfig:
    """Read and parse a config file; a missing or unreadable file is a ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror}", filename=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"the file is not UTF-8 text ({e.reason} at byte {e.start})", filename=path) from None
    return parse_config(text, filename=path)


if __name__ == "__main__":  # pragma: no cover
    # python -m webrtcstack.config --ini > etc/stack.ini
    # python -m webrtcstack.config --markdown   (the tables in docs/configuration.md)
    import sys

    if sys.argv[1:] == ["--ini"]:
        sys.stdout.write(render_default_ini())
    elif sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(render_markdown_reference())
    else:
        sys.stderr.write("usage: python -m webrtcstack.config --ini | --markdown\n")
        raise SystemExit(2)
