"""The ``webrtcstack`` admin command.

Subcommands:

- ``check-config [PATH]``: validate a config file and print what would listen where.

Each subcommand is a function taking the parsed arguments and returning the
exit status, registered in :data:`COMMANDS`; later features add theirs there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from webrtcstack import __version__
from webrtcstack.config import ConfigError


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the config; 0 when valid, 2 when not."""
    from webrtcstack.service import describe_listeners
    from webrtcstack.tap import find_config, read_config

    try:
        config = read_config(args.path)
    except ConfigError as e:
        print(f"webrtcstack: invalid config: {e}", file=sys.stderr)
        return 2
    name = find_config(args.path) or "built-in defaults"
    print(f"config {name}: OK")
    for line in describe_listeners(config):
        print(f"  {line}")
    return 0


def _add_check_config(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check-config", help="validate a config file and show what would listen where")
    p.add_argument("path", nargs="?", default=None, help="config file (default: etc/stack.ini, then /etc/webrtcstack/stack.ini)")
    p.set_defaults(func=cmd_check_config)


#: Functions that add one subcommand each to the parser.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_check_config]  # type: ignore[type-arg]


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
