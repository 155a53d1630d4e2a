"""The ``webrtcstack`` admin command.

Subcommands:

- ``check-config [PATH]``: validate a config file and print what would listen where.
- ``gencert --host NAME``: write a self-signed certificate and key (for tests and first setup).
- ``turn-credentials --user NAME --ttl S``: print a TURN REST username and password
  made from the config's ``[turn] static_auth_secret``.
- ``status``: read the running stack's ``/status`` on ``[metrics] listen``.

Each subcommand is a function taking the parsed arguments and returning the
exit status, registered in :data:`COMMANDS`; later features add theirs there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from webrtcstack import __version__
from webrtcstack.config import ConfigError


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the config; 0 when valid, 2 when not."""
    from webrtcstack.service import check_certificates, config_warnings, describe_listeners
    from webrtcstack.tap import find_config, read_config
    from webrtcstack.tls import TlsError

    try:
        config = read_config(args.path)
        cert_line = check_certificates(config)
    except ConfigError as e:
        print(f"webrtcstack: invalid config: {e}", file=sys.stderr)
        return 2
    except TlsError as e:
        print(f"webrtcstack: invalid config: {config.filename}: {e}", file=sys.stderr)
        return 2
    name = find_config(args.path) or "built-in defaults"
    print(f"config {name}: OK")
    if cert_line:
        print(f"  {cert_line}")
    for line in describe_listeners(config):
        print(f"  {line}")
    for line in config_warnings(config):
        print(f"  warning: {line}")
    return 0


def _add_check_config(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check-config", help="validate a config file and show what would listen where")
    p.add_argument("path", nargs="?", default=None, help="config file (default: etc/stack.ini, then /etc/webrtcstack/stack.ini)")
    p.set_defaults(func=cmd_check_config)


def cmd_gencert(args: argparse.Namespace) -> int:
    """Write a self-signed certificate and key; 1 if a file exists and --force was not given."""
    from webrtcstack.tls import write_self_signed

    for path in (args.cert, args.key):
        if os.path.exists(path) and not args.force:
            print(f"webrtcstack: {path} exists; use --force to overwrite it", file=sys.stderr)
            return 1
    info = write_self_signed(args.host, args.cert, args.key, days=args.days)
    print(f"wrote {args.cert} (certificate for {', '.join(info.names)}, valid {args.days} days, "
          f"sha256 {info.fingerprint_sha256})")
    print(f"wrote {args.key} (private key, mode 0600)")
    print("add to the config:\n  [tls]\n"
          f"  certificate = {os.path.abspath(args.cert)}\n  private_key = {os.path.abspath(args.key)}")
    return 0


def _add_gencert(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("gencert", help="write a self-signed certificate and key (testing only)")
    p.add_argument("--host", action="append", required=True, metavar="NAME",
                   help="a DNS name or IP address the certificate is for (repeat for more)")
    p.add_argument("--cert", default="cert.pem", help="certificate file to write (default: cert.pem)")
    p.add_argument("--key", default="key.pem", help="private key file to write (default: key.pem)")
    p.add_argument("--days", type=int, default=365, help="validity in days (default: 365)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_gencert)


def cmd_turn_credentials(args: argparse.Namespace) -> int:
    """Print a REST API username/password; 2 when the config has no secret."""
    from webrtcstack.rooms.credentials import rest_credentials
    from webrtcstack.tap import read_config

    try:
        config = read_config(args.config)
    except ConfigError as e:
        print(f"webrtcstack: invalid config: {e}", file=sys.stderr)
        return 2
    secret = config.turn.static_auth_secret[0] if config.turn.static_auth_secret else None
    if secret is None:
        from webrtcstack.state import SECRET_FILE, read_secret, state_dir

        directory = state_dir(config)
        try:
            secret = read_secret(directory)
        except OSError as e:
            print(f"webrtcstack: cannot read {os.path.join(directory, SECRET_FILE)}: {e.strerror} "
                  "(run as the stack's user or root)", file=sys.stderr)
            return 2
        if secret is None:
            print(f"webrtcstack: {config.filename} sets no [turn] static_auth_secret and the stack has not kept one "
                  f"in {directory} yet (it does on its first start); start it once, or set one", file=sys.stderr)
            return 2
    username, password = rest_credentials(secret, args.user, ttl_s=args.ttl,
                                          now=time.time(), separator=config.turn.rest_api_separator)
    if args.json:
        print(json.dumps({"username": username, "credential": password, "ttl": args.ttl}))
    else:
        print(f"username: {username}")
        print(f"password: {password}")
    return 0


def _add_turn_credentials(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("turn-credentials", help="print TURN REST API credentials from the config's secret")
    p.add_argument("--user", required=True, metavar="NAME", help="the name after the expiry time")
    p.add_argument("--ttl", type=int, default=86400, metavar="S", help="seconds the credentials stay valid (default: 86400)")
    p.add_argument("-c", "--config", default=None, help="config file (default: etc/stack.ini, then /etc/webrtcstack/stack.ini)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_turn_credentials)


def status_url(config: Any) -> str:
    """The ``/status`` URL of the first ``[metrics] listen`` endpoint (wildcards mean loopback)."""
    if not config.metrics.listen:
        raise ValueError("[metrics] listen is empty")
    ep = config.metrics.listen[0]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(ep.host, ep.host)
    return f"http://[{host}]:{ep.port}/status" if ":" in host else f"http://{host}:{ep.port}/status"


def cmd_status(args: argparse.Namespace) -> int:
    """Fetch and print ``/status``; 1 when the stack does not answer."""
    from urllib.error import URLError
    from urllib.request import urlopen

    from webrtcstack.tap import read_config

    url = args.url
    if url is None:
        try:
            url = status_url(read_config(args.config))
        except (ConfigError, ValueError) as e:
            print(f"webrtcstack: {e}", file=sys.stderr)
            return 2
    try:
        with urlopen(url, timeout=args.timeout) as response:
            body = response.read()
    except (URLError, OSError) as e:
        print(f"webrtcstack: no answer from {url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    status = json.loads(body)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(f"webrtcstack {status.get('version', '?')}: {status.get('state', '?')}, up {status.get('uptime_s', 0):.0f}s")
    for key in ("allocations", "rooms", "clients", "websockets"):
        print(f"  {key}: {status.get(key, 0)}")
    for line in status.get("listeners", []):
        print(f"  listening: {line}")
    cert = status.get("certificate")
    if cert:
        print(f"  certificate: {', '.join(cert['names'])}, expires {time.strftime('%Y-%m-%d', time.gmtime(cert['not_after']))}")
    cluster = status.get("cluster")
    if cluster:
        state = "ready" if cluster.get("ready") else "NOT READY"
        print(f"  cluster: node {cluster.get('node_id')} ({state}), redis {cluster.get('redis')}"
              f" ({'up' if cluster.get('redis_up') else 'DOWN'}), {len(cluster.get('nodes', []))} live node(s)")
        for node in cluster.get("nodes", []):
            print(f"    {node.get('node_id')}: lease {node.get('lease_left_s', 0):.1f}s left, "
                  f"{node.get('websockets', 0)} websockets, {node.get('allocations', 0)} allocations"
                  + (f", {node['public_url']}" if node.get("public_url") else ""))
    return 0


def _add_status(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="show the running stack's status (from [metrics] listen)")
    p.add_argument("-c", "--config", default=None, help="config file (default: etc/stack.ini, then /etc/webrtcstack/stack.ini)")
    p.add_argument("--url", default=None, help="the status URL (default: from [metrics] listen)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default: 5)")
    p.add_argument("--json", action="store_true", help="print the JSON as received")
    p.set_defaults(func=cmd_status)


def _admin_call(args: argparse.Namespace, method: str, path: str) -> tuple[int, Any]:
    """One call to the admin API (URL and token from the config); (exit status, the JSON answer or None)."""
    from urllib.error import HTTPError, URLError
    from urllib.parse import quote
    from urllib.request import Request, urlopen

    from webrtcstack.state import ADMIN_TOKEN_FILE, read_secret, state_dir
    from webrtcstack.tap import read_config

    try:
        config = read_config(args.config)
        base = args.url or status_url(config).rsplit("/", 1)[0]
    except (ConfigError, ValueError) as e:
        print(f"webrtcstack: {e}", file=sys.stderr)
        return 2, None
    directory = state_dir(config)
    try:
        token = read_secret(directory, ADMIN_TOKEN_FILE)
    except OSError as e:
        print(f"webrtcstack: cannot read the admin token in {directory}: {e.strerror} (run as the stack's user or root)",
              file=sys.stderr)
        return 2, None
    if token is None:
        print(f"webrtcstack: no admin token in {directory} (has the stack started with this config?)", file=sys.stderr)
        return 2, None
    request = Request(base + "/admin/" + quote(path), method=method, headers={"Authorization": f"Bearer {token}"})
    try:
        with urlopen(request, timeout=args.timeout) as response:
            body = response.read()
    except HTTPError as e:
        try:
            why = json.loads(e.read() or b"{}").get("error", e.reason)
        except (ValueError, AttributeError):
            why = f"HTTP {e.code} {e.reason} (is {base} the stack's metrics listener?)"
        print(f"webrtcstack: {why}", file=sys.stderr)
        return 1, None
    except (URLError, OSError) as e:
        print(f"webrtcstack: no answer from {base}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1, None
    try:
        return 0, json.loads(body)
    except ValueError:
        print(f"webrtcstack: {base}/admin/{path} did not answer JSON (is it the stack's metrics listener?)",
              file=sys.stderr)
        return 1, None


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def cmd_sessions(args: argparse.Namespace) -> int:
    """List TURN allocations and rooms (``GET /admin/sessions``)."""
    status, answer = _admin_call(args, "GET", "sessions")
    if answer is None:
        return status
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0
    allocations, rooms = answer.get("allocations", []), answer.get("rooms", [])
    print(f"{len(allocations)} allocations, {len(rooms)} rooms ({answer.get('scope', '')})")
    for a in allocations:
        print(f"  {a['id']:>6}  {a['user']:<24} {a['transport']} {a['client']} -> {' '.join(a['relayed'])}  "
              f"peers {','.join(a['peers']) or '-'}  up {_bytes(a['bytes_to_peer'])} down {_bytes(a['bytes_to_client'])}  "
              f"age {a['age_s']:.0f}s")
    for room in rooms:
        members = " ".join(f"{m['client']}{'' if m['socket'] else ' (no socket)'}" for m in room["members"])
        print(f"  room/{room['room']}  {members or '(empty)'}")
    return 0


def cmd_end(args: argparse.Namespace) -> int:
    """End a session (``DELETE /admin/sessions/ID``)."""
    status, answer = _admin_call(args, "DELETE", f"sessions/{args.id}")
    if answer is None:
        return status
    print("ended " + ", ".join(answer.get("ended", [])))
    return 0


def _add_admin(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name, func, text in (("sessions", cmd_sessions, "list TURN allocations and rooms (the admin API on [metrics] listen)"),
                             ("end", cmd_end, "end a session: an allocation (a17), a room member (room/ROOM/CLIENT) or a room (room/ROOM)")):
        p = sub.add_parser(name, help=text)
        if name == "end":
            p.add_argument("id", help="what `webrtcstack sessions` lists: a17, room/ROOM/CLIENT or room/ROOM")
        p.add_argument("-c", "--config", default=None, help="config file (default: etc/stack.ini, then /etc/webrtcstack/stack.ini)")
        p.add_argument("--url", default=None, help="the metrics listener's base URL (default: from [metrics] listen)")
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default: 5)")
        if name == "sessions":
            p.add_argument("--json", action="store_true", help="print the JSON as received")
        p.set_defaults(func=func)


#: Functions that add one subcommand each to the parser.
def _user_db(args: argparse.Namespace, need_realm: bool = True) -> tuple[Any, str] | None:
    """The users database and realm named by ``--db``/``--realm`` or by the config's [turn] users_db and realm."""
    from webrtcstack.config import parse_users_db
    from webrtcstack.tap import read_config
    from webrtcstack.turn.adapters.userdb import UserDbError, open_user_db

    realm = args.realm
    url = ""
    cluster_url = ""
    ca_file = args.ca_file or ""
    if args.db:
        try:
            url = parse_users_db(args.db)
        except Exception as e:  # the config's value parsers raise their own error type
            print(f"webrtcstack: --db: {e}", file=sys.stderr)
            return None
    if not url or url == "redis" or (realm is None and need_realm):
        try:
            config = read_config(args.config)
        except ConfigError as e:
            print(f"webrtcstack: invalid config: {e}", file=sys.stderr)
            return None
        url = url or config.turn.users_db
        cluster_url = config.redis.url
        ca_file = ca_file or config.redis.ca_file
        realm = config.turn.realm if realm is None else realm
        if not url:
            print(f"webrtcstack: {config.filename} sets no [turn] users_db; set it (sqlite:///path or "
                  "redis://host:port/db) or pass --db", file=sys.stderr)
            return None
    try:
        return open_user_db(url, cluster_url, ca_file), realm or ""
    except (UserDbError, ValueError) as e:
        print(f"webrtcstack: {e}", file=sys.stderr)
        return None


def cmd_turn_user(args: argparse.Namespace) -> int:
    """``turn-user add|delete|list``, like coturn's ``turnadmin -a/-d/-l``."""
    from webrtcstack.turn.adapters.userdb import UserDbError

    found = _user_db(args)
    if found is None:
        return 2
    db, realm = found
    try:
        if args.action == "add":
            password = args.password
            if password is None:
                import getpass

                password = getpass.getpass(f"password for {args.name}: ")
            if not password:
                print("webrtcstack: the password is empty", file=sys.stderr)
                return 2
            db.add_user(realm, args.name, password)
            print(f"added {args.name} in realm {realm} to {db.where}")
        elif args.action == "delete":
            if not db.delete_user(realm, args.name):
                print(f"webrtcstack: no user {args.name} in realm {realm} in {db.where}", file=sys.stderr)
                return 1
            print(f"deleted {args.name} from realm {realm}")
        else:
            for row_realm, name in db.users(None if args.all_realms else realm):
                print(f"{name}\t{row_realm}" if args.all_realms else name)
    except UserDbError as e:
        print(f"webrtcstack: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_turn_secret(args: argparse.Namespace) -> int:
    """``turn-secret add|delete|list``: REST API secrets (several at once, for rotation)."""
    from webrtcstack.turn.adapters.userdb import UserDbError

    found = _user_db(args)
    if found is None:
        return 2
    db, realm = found
    try:
        if args.action == "add":
            db.add_secret(realm, args.value)
            print(f"added a secret in realm {realm} to {db.where}")
        elif args.action == "delete":
            if not db.delete_secret(realm, args.value):
                print(f"webrtcstack: no such secret in realm {realm} in {db.where}", file=sys.stderr)
                return 1
            print(f"deleted a secret from realm {realm}")
        else:
            for _, value in db.secrets(realm):
                print(value)
    except UserDbError as e:
        print(f"webrtcstack: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_turn_db(args: argparse.Namespace) -> int:
    """``turn-db import TURNDB``: copy a coturn SQLite turndb's users and secrets (every realm)."""
    from webrtcstack.turn.adapters.userdb import UserDbError

    found = _user_db(args, need_realm=False)
    if found is None:
        return 2
    db, _ = found
    try:
        users, secrets = db.import_turndb(args.turndb)
    except UserDbError as e:
        print(f"webrtcstack: importing {args.turndb} into {db.where}: {e}", file=sys.stderr)
        return 2
    print(f"imported {users} users and {secrets} REST secrets from {args.turndb} into {db.where}")
    return 0


def _db_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, help="config file (default: etc/stack.ini, then /etc/webrtcstack/stack.ini)")
    p.add_argument("--db", default=None, metavar="URL", help="sqlite:///path, redis://host:port/db or redis (default: the config's [turn] users_db)")
    p.add_argument("--realm", default=None, help="the realm (default: the config's [turn] realm)")
    p.add_argument("--ca-file", default=None, metavar="PEM",
                   help="for rediss://: the CA that signs Redis's certificate (default: the config's [redis] ca_file)")


def _add_turn_db(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    users = sub.add_parser("turn-user", help="add, delete or list TURN users in [turn] users_db (like turnadmin)")
    actions = users.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="add a user (or set a new password)")
    add.add_argument("name")
    add.add_argument("--password", default=None, help="the password (asked for when left out)")
    delete = actions.add_parser("delete", help="delete a user")
    delete.add_argument("name")
    listing = actions.add_parser("list", help="list the realm's users")
    listing.add_argument("--all-realms", action="store_true", help="every realm's users, with the realm")
    for p in (add, delete, listing):
        _db_options(p)
        p.set_defaults(func=cmd_turn_user)
    secrets = sub.add_parser("turn-secret", help="add, delete or list TURN REST API secrets in [turn] users_db")
    actions = secrets.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for name, text in (("add", "add a secret"), ("delete", "delete a secret")):
        p = actions.add_parser(name, help=text)
        p.add_argument("value")
        _db_options(p)
        p.set_defaults(func=cmd_turn_secret)
    p = actions.add_parser("list", help="list the realm's secrets")
    _db_options(p)
    p.set_defaults(func=cmd_turn_secret)
    db = sub.add_parser("turn-db", help="import coturn's SQLite turndb into [turn] users_db")
    actions = db.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("import", help="copy a coturn turndb's users and secrets (every realm)")
    p.add_argument("turndb", help="the coturn SQLite file (turnadmin -b, or /var/lib/turn/turndb)")
    _db_options(p)
    p.set_defaults(func=cmd_turn_db)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [  # type: ignore[type-arg]
    _add_check_config, _add_gencert, _add_turn_credentials, _add_turn_db, _add_status, _add_admin,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="webrtcstack", description="webrtcstack admin utilities")
    parser.add_argument("--version", action="version", version=f"webrtcstack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``webrtcstack`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
