"""What a reload may change at once, and what needs a restart (pure; no reactor).

On SIGHUP the stack re-reads its config file.  Users, secrets, peer allow and
deny lists, quotas, limits and the certificate files apply to new requests at
once.  Keys that decide which sockets exist (listen addresses, the relay port
range and addresses, whether a part is enabled, and the log format chosen
at start) cannot change under a running process: :func:`restart_keys`
names them so the log can say so, and the rest of the new config is still
applied.
"""

from __future__ import annotations

from collections.abc import Iterator

import attr

from webrtcstack.config import StackConfig, schema

#: (section, key) pairs that only take effect on a restart: the keys the
#: schema marks ``restart=True`` (one list, so it cannot drift).
RESTART_KEYS: frozenset[tuple[str, str]] = frozenset((info.section, info.key) for info in schema() if info.restart)

#: Keys that are one choice with a restart key: while that key waits for a
#: restart they keep their running values too (switching ``[tls] acme`` on
#: empties the certificate files, which the running stack still serves).
TIED_KEYS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("tls", "acme"): (("tls", "certificate"), ("tls", "private_key")),
}


def _held(old: StackConfig, new: StackConfig) -> set[tuple[str, str]]:
    """The keys whose running values stay: the restart keys, and those tied to a changed restart key."""
    held = set(RESTART_KEYS)
    for (section, key), tied in TIED_KEYS.items():
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key):
            held.update(tied)
    return held


def changed_keys(old: StackConfig, new: StackConfig) -> Iterator[tuple[str, str]]:
    """Every (section, key) whose value differs, in schema order."""
    for field in attr.fields(StackConfig):
        if field.name == "filename":
            continue
        old_sec, new_sec = getattr(old, field.name), getattr(new, field.name)
        for key_field in attr.fields(type(old_sec)):
            if getattr(old_sec, key_field.name) != getattr(new_sec, key_field.name):
                yield field.name, key_field.name


def restart_keys(old: StackConfig, new: StackConfig) -> list[str]:
    """The changed keys that need a restart, as ``[section] key`` text."""
    return [f"[{s}] {k}" for s, k in changed_keys(old, new) if (s, k) in RESTART_KEYS]


def applied_keys(old: StackConfig, new: StackConfig) -> list[str]:
    """The changed keys a reload applies at once, as ``[section] key`` text."""
    held = _held(old, new)
    return [f"[{s}] {k}" for s, k in changed_keys(old, new) if (s, k) not in held]


def effective_config(old: StackConfig, new: StackConfig) -> StackConfig:
    """``new``, except that keys needing a restart keep their running values.

    What the components are handed on reload, so that ``[turn] relay_ports``
    and the like stay true to the sockets actually open.
    """
    sections = {}
    held = _held(old, new)
    for field in attr.fields(StackConfig):
        if field.name == "filename":
            continue
        old_sec, new_sec = getattr(old, field.name), getattr(new, field.name)
        keep = {k: getattr(old_sec, k) for s, k in held if s == field.name}
        sections[field.name] = attr.evolve(new_sec, **keep)
    return attr.evolve(new, **sections)
