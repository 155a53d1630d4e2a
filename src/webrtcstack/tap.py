"""twistd entry point: ``Options`` and ``makeService`` only.

``twistd -n webrtcstack -c etc/stack.ini`` parses and validates the config in
``Options.postOptions``, so a bad config exits non-zero before twistd binds
any port; ``makeService`` then wires the builders in :mod:`webrtcstack.service`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from webrtcstack.config import ConfigError, StackConfig, load_config

DEFAULT_CONFIG_PATHS = ("etc/stack.ini", "/etc/webrtcstack/stack.ini")


def find_config(explicit: str | None) -> str | None:
    """The config file to use: ``explicit``, else the first default path that exists, else None."""
    if explicit:
        return explicit
    for path in DEFAULT_CONFIG_PATHS:
        if os.path.exists(path):
            return path
    return None


def read_config(explicit: str | None) -> StackConfig:
    """Load the config named by ``explicit`` or found on the default paths.

    With no file at all, the built-in defaults (the same as ``etc/stack.ini``) apply.
    """
    path = find_config(explicit)
    if path is None:
        return StackConfig()
    return load_config(path)


class Options(usage.Options):
    """Command-line options of ``twistd webrtcstack``."""

    synopsis = "[-c PATH] [--check] [--log-format text|json]"
    longdesc = (
        "Runs STUN/TURN, WebSocket signaling and the room server from one ini file. "
        "Without -c, etc/stack.ini in the working directory is used, then "
        "/etc/webrtcstack/stack.ini, then the built-in defaults."
    )
    optParameters = [
        ["config", "c", None, "the config file (default: etc/stack.ini, then /etc/webrtcstack/stack.ini)"],
        ["log-format", None, None, "text or json (overrides [stack] log_format)"],
    ]
    optFlags = [
        ["check", None, "validate the config, print what would listen where, and exit (0 if valid)"],
    ]

    config: StackConfig

    def postOptions(self) -> None:
        try:
            self.config = read_config(self["config"])
        except ConfigError as e:
            sys.stderr.write(f"webrtcstack: invalid config: {e}\n")
            sys.stderr.flush()
            raise SystemExit(2)
        if self["log-format"] is not None:
            if self["log-format"] not in ("text", "json"):
                raise usage.UsageError("--log-format must be text or json")
            import attr

            self.config = attr.evolve(self.config, stack=attr.evolve(self.config.stack, log_format=self["log-format"]))
        from webrtcstack.service import check_certificates, config_warnings, describe_listeners
        from webrtcstack.tls import TlsError

        try:
            cert_line = check_certificates(self.config)
        except ConfigError as e:
            sys.stderr.write(f"webrtcstack: invalid config: {e}\n")
            sys.stderr.flush()
            raise SystemExit(2)
        except TlsError as e:
            sys.stderr.write(f"webrtcstack: invalid config: {self.config.filename}: {e}\n")
            sys.stderr.flush()
            raise SystemExit(2)
        if self["check"]:
            sys.stdout.write(f"config {self.config.filename}: OK\n")
            if cert_line:
                sys.stdout.write(f"  {cert_line}\n")
            for line in describe_listeners(self.config):
                sys.stdout.write(f"  {line}\n")
            for line in config_warnings(self.config):
                sys.stdout.write(f"  warning: {line}\n")
            sys.stdout.flush()
            raise SystemExit(0)


def config_source(config: StackConfig) -> tuple[bool, str]:
    """The start-up log's line on where the config came from: (is it a warning, text)."""
    if config.filename == "<defaults>":
        return True, (f"no config file found (looked for {' and '.join(DEFAULT_CONFIG_PATHS)}): running on the "
                      "built-in defaults (the same as etc/stack.ini); give one with -c PATH")
    return False, f"config file {os.path.abspath(config.filename)}"


def makeService(options: Any) -> IService:
    """Build the whole stack as one MultiService (ports bind when it starts)."""
    from twisted.internet import reactor
    from twisted.logger import Logger

    from webrtcstack.service import build_service, kept_admin_token, kept_auth_secrets

    warning, line = config_source(options.config)
    (Logger().warn if warning else Logger().info)("{line}", line=line)
    try:
        return build_service(options.config, reactor, auth_secrets=kept_auth_secrets(options.config),
                             admin_token=kept_admin_token(options.config))
    except ConfigError as e:  # found while building (a password file that cannot be read): before binding
        sys.stderr.write(f"webrtcstack: invalid config: {e}\n")
        sys.stderr.flush()
        raise SystemExit(2)
