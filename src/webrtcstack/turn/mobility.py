# -*- test-case-name: tests.turn.test_mobility -*-
"""MOBILITY-TICKET (RFC 8016): sealed tickets that let a UDP allocation move to a new 5-tuple.

A ticket is opaque to the client and needs no table on the server: it is
AES-GCM-sealed under a per-process key, and carries the allocation's id, the
allocation's ticket generation, the user and an expiry.  A ticket opens only
here, only unchanged, only before it expires.  Each ticket issued for an
allocation bumps its generation, so only the newest one is accepted: a ticket
used to move (or replaced by a later Refresh) cannot be replayed.

Pure: the key and the nonces come from ``os.urandom``; time is passed in.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["TicketSealer", "Ticket"]

_HEAD = struct.Struct("!IQ")  # generation, expiry (whole seconds)
_AAD = b"webrtcstack mobility ticket v1"


class Ticket:
    """What an opened ticket says."""

    __slots__ = ("allocation_id", "generation", "username")

    def __init__(self, allocation_id: str, generation: int, username: str) -> None:
        self.allocation_id = allocation_id
        self.generation = generation
        self.username = username


class TicketSealer:
    """Seals and opens mobility tickets.

    :param key: 16, 24 or 32 bytes (random per process by default).
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = AESGCM(key if key is not None else os.urandom(16))

    def seal(self, allocation_id: str, generation: int, username: str, expires_at: float) -> bytes:
        """A ticket for ``allocation_id`` at ``generation``, good until ``expires_at`` (seconds)."""
        ident = allocation_id.encode("utf-8")
        plain = _HEAD.pack(generation, int(expires_at)) + bytes((len(ident),)) + ident + username.encode("utf-8")
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plain, _AAD)

    def open(self, ticket: bytes, now: float) -> Ticket | None:
        """The ticket's contents, or None if it is not ours, altered, malformed or expired."""
        if len(ticket) < 12 + 16 + _HEAD.size + 1:
            return None
        try:
            plain = self._aead.decrypt(ticket[:12], ticket[12:], _AAD)
        except InvalidTag:
            return None
        generation, expires_at = _HEAD.unpack_from(plain)
        if expires_at < now:
            return None
        n = plain[_HEAD.size]
        start = _HEAD.size + 1
        try:
            allocation_id = plain[start:start + n].decode("utf-8")
            username = plain[start + n:].decode("utf-8")
        except UnicodeDecodeError:  # pragma: no cover - we sealed it
            return None
        return Ticket(allocation_id, generation, username)
