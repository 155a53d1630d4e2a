"""What the stack keeps between runs: the TURN REST secret and the admin token it made itself.

With ``[turn] static_auth_secret`` empty, the first start makes a random
secret and keeps it in ``<state dir>/turn-secret`` (mode 0600).  Every later
start, and ``webrtcstack turn-credentials``, read the same file, so
credentials minted outside the process work and survive restarts.

``<state dir>/admin-token`` (mode 0600) is the bearer token of the sessions
admin API on the metrics listener; ``webrtcstack sessions`` and
``webrtcstack end`` read it the same way.  ``acme/`` holds the ACME account
and certificates (:mod:`webrtcstack.certs`).

The state directory is ``[stack] state_dir`` when set; else systemd's
``$STATE_DIRECTORY`` (the unit's ``StateDirectory=webrtcstack``); else
``/var/lib/webrtcstack`` when that exists (a server set up as docs/install.md
says); else ``$XDG_STATE_HOME/webrtcstack`` (``~/.local/state/webrtcstack``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping

from webrtcstack.config import StackConfig

__all__ = ["state_dir", "read_secret", "load_or_create_secret", "SECRET_FILE", "ADMIN_TOKEN_FILE"]

SECRET_FILE = "turn-secret"
ADMIN_TOKEN_FILE = "admin-token"
SYSTEM_DIR = "/var/lib/webrtcstack"


def state_dir(config: StackConfig, environ: Mapping[str, str] | None = None, system_dir: str = SYSTEM_DIR) -> str:
    """Where this stack keeps its state (see the module docstring)."""
    env = os.environ if environ is None else environ
    if config.stack.state_dir:
        return config.stack.state_dir
    if env.get("STATE_DIRECTORY"):
        return env["STATE_DIRECTORY"].split(":")[0]
    if os.path.isdir(system_dir):
        return system_dir
    base = env.get("XDG_STATE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "webrtcstack")


def read_secret(directory: str, name: str = SECRET_FILE) -> str | None:
    """The kept secret (or token: ``name``), or None if there is none yet."""
    try:
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            secret = f.readline().strip()
    except FileNotFoundError:
        return None
    return secret or None


def load_or_create_secret(directory: str, name: str = SECRET_FILE) -> str:
    """The kept secret (or token: ``name``); made (random, 256 bits) and written with mode 0600 on first use.

    :raises OSError: the directory or file cannot be made or read.
    """
    secret = read_secret(directory, name)
    if secret is not None:
        return secret
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, name)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return read_secret(directory, name) or secret
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret
