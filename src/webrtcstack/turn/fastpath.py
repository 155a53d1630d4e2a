# -*- test-case-name: tests.turn.test_udp_fast_path -*-
"""The data fast path: the one table the adapters read (STYLE.md).

Client data on an established allocation is the hot path.  The allocation
manager owns the truth and keeps two plain dicts current on ChannelBind,
CreatePermission, expiry and deletion; an adapter reads them directly, with
no effect objects, logging or attribute parsing per packet:

* ``channels``: ``(five_tuple, channel number)`` → ``(allocation, peer, relay)``
  for every bound channel (RFC 8656 §12.6 asks for a bound channel, not a
  permission, before relaying ChannelData from the client);
* ``allocations``: ``five_tuple`` → :class:`Allocation` (Send indications).

The peer side is ``Allocation.channel_by_peer`` (see allocation.py).  Both the
UDP listener's inline loop and :meth:`TurnEngine.handle_client_message` call
:meth:`FastPath.channel_data` and :meth:`FastPath.send_indication`, and both
end in :meth:`Allocation.relay_to_peer`: one implementation, one set of
counters and buckets.  A kernel offload would mirror ``channels`` into its map.
"""

from __future__ import annotations

from typing import Any

from webrtcstack.turn.allocation import Allocation, Relay, TurnCounters
from webrtcstack.turn.five_tuple import Address

__all__ = ["FastPath", "ChannelRoute"]

#: What a bound channel resolves to.
ChannelRoute = tuple[Allocation, Address, Relay]


class FastPath:
    """The tables the client fast paths read, and the two per-packet operations on them."""

    __slots__ = ("channels", "allocations", "counters")

    def __init__(self, allocations: dict[Any, Allocation], counters: TurnCounters) -> None:
        self.channels: dict[tuple[Any, int], ChannelRoute] = {}
        #: The allocation manager's own dict (read here, changed only there).
        self.allocations = allocations
        self.counters = counters

    def channel_data(self, five_tuple: Any, data: bytes, now: float) -> None:
        """Relay one ChannelData message from a client to its peer (RFC 8656 §12.4, §12.6).

        No bound channel: dropped (``no_channel``).  The length field must fit
        in ``data`` (else ``malformed``); padding and anything past the length
        are not sent.

        :param five_tuple: a :class:`FiveTuple` or the equal plain tuple.
        """
        if len(data) < 4:
            self.counters.drop("malformed")
            return
        route = self.channels.get((five_tuple, (data[0] << 8) | data[1]))
        if route is None:
            self.counters.drop("no_channel")
            return
        length = (data[2] << 8) | data[3]
        if length > len(data) - 4:
            self.counters.drop("malformed")
            return
        allocation, peer, relay = route
        allocation.relay_to_peer(data[4:4 + length], peer, relay, now)

    def send_indication(self, five_tuple: Any, data: bytes, now: float) -> bool:
        """Relay a plain Send indication to a permitted IPv4 peer; False: take the full path instead."""
        allocation = self.allocations.get(five_tuple)
        return allocation is not None and allocation.handle_send_indication(data, now)
