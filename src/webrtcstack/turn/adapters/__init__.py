"""The Twisted shell of STUN/TURN: the only code under ``stun/`` and ``turn/`` that does I/O.

First version: STUN Binding over UDP (:mod:`.udp`) and TCP (:mod:`.tcp`).

Both transports call one controller (see :class:`StunController`)::

    controller.handle(raw: bytes, source: tuple[str, int], transport: str) -> bytes | None

It returns the reply to send back to ``source`` (or ``None``) and raises
:class:`~webrtcstack.stun.errors.StunDecodeError` for bytes to drop.
:class:`webrtcstack.stun.binding.BindingHandler` is such a controller; the
TURN engine's adapter can wrap the engine in the same shape or extend these
protocols.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["StunController"]


class StunController(Protocol):
    """What a STUN listener hands its packets to."""

    def handle(self, raw: bytes, source: tuple[str, int], transport: str) -> bytes | None:
        """One whole message (datagram or stream frame) from ``source``; the reply, or ``None``.

        :raises StunDecodeError: to drop the packet (UDP) or close the connection (TCP).
        """
