"""Allocate (RFC 8656 §7.2, with RFC 6156/8656 dual allocations): receiving an Allocate request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webrtcstack.stun.constants import MAGIC_COOKIE_BYTES, AttrType, ErrorCode
from webrtcstack.stun.errors import ProtocolViolation
from webrtcstack.stun.message import packed_xor_address
from webrtcstack.turn.five_tuple import FiveTuple, Transport
from webrtcstack.turn.methods.common import FAMILY_CODE, Request, granted_lifetime
from webrtcstack.turn.tcp_relay import TCP

if TYPE_CHECKING:
    from webrtcstack.turn.engine import TurnEngine

__all__ = ["handle_allocate", "issue_ticket", "no_room"]

#: REQUESTED-TRANSPORT protocol numbers we relay (RFC 8656 §18.7): UDP, and TCP (RFC 6062) when it is on.
_UDP = 17


def handle_allocate(engine: TurnEngine, request: Request, now: float) -> list[tuple[int, Any]]:
    """RFC 8656 §7.2: the checks in the RFC's order, then the allocation and its success response.

    Step 1 (authentication) is done before any handler runs.
    """
    settings, manager, first = engine.settings, engine.manager, request.first
    five_tuple = request.five_tuple
    # Step 2: a 5-tuple already in use -> 437 (a retransmission was answered from the cache).
    if manager.get(five_tuple) is not None:
        raise ProtocolViolation(ErrorCode.ALLOCATION_MISMATCH)
    # Step 3: REQUESTED-TRANSPORT must be there (400) and be UDP (442).
    transport = first.get(AttrType.REQUESTED_TRANSPORT)
    if transport is None or len(transport) != 4:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    tcp = transport[0] == TCP
    if tcp:
        # RFC 6062 §5.1: TCP only when it is on (442 otherwise, as for any other protocol), only
        # from a TCP or TLS client (400), and without DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN (400).
        if not settings.tcp_relay:
            raise ProtocolViolation(ErrorCode.UNSUPPORTED_TRANSPORT_PROTOCOL)
        if five_tuple.transport not in (Transport.TCP, Transport.TLS) or (
                AttrType.DONT_FRAGMENT in first or AttrType.EVEN_PORT in first
                or AttrType.RESERVATION_TOKEN in first):
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    elif transport[0] != _UDP:
        raise ProtocolViolation(ErrorCode.UNSUPPORTED_TRANSPORT_PROTOCOL)
    # Step 4: DONT-FRAGMENT is supported (the relay socket sets DF).
    dont_fragment = AttrType.DONT_FRAGMENT in first
    # RFC 8016 §3.1: MOBILITY-TICKET asks for mobility: 405 unless it is on (UDP clients only).
    mobile = AttrType.MOBILITY_TICKET in first
    if mobile and (not settings.mobility or five_tuple.transport is not Transport.UDP):
        raise ProtocolViolation(ErrorCode.MOBILITY_FORBIDDEN)
    token = first.get(AttrType.RESERVATION_TOKEN)
    even_port = first.get(AttrType.EVEN_PORT)
    requested_family = first.get(AttrType.REQUESTED_ADDRESS_FAMILY)
    additional_family = first.get(AttrType.ADDITIONAL_ADDRESS_FAMILY)
    # Step 5: RESERVATION-TOKEN excludes EVEN-PORT and the address family attributes (400).
    if token is not None and (even_port is not None or requested_family is not None
                              or additional_family is not None):
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    # Step 6: EVEN-PORT must be well formed.
    if even_port is not None and len(even_port) < 1:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    # Steps 7 and 8: the families (REQUESTED-ADDRESS-FAMILY: one, 440 if unsupported;
    # ADDITIONAL-ADDRESS-FAMILY: IPv6 beside IPv4; both at once: 400).
    if requested_family is not None and additional_family is not None:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST)
    families: list[int]
    if requested_family is not None:
        family = FAMILY_CODE.get(requested_family[0]) if requested_family else None
        if family is None:
            raise ProtocolViolation(ErrorCode.ADDRESS_FAMILY_NOT_SUPPORTED)
        families = [family]
    elif additional_family is not None:
        if not additional_family or additional_family[0] != 2:
            raise ProtocolViolation(ErrorCode.BAD_REQUEST)
        families = [4, 6]
    else:
        families = [4]
    if families[0] not in settings.relay_hosts:
        raise ProtocolViolation(ErrorCode.ADDRESS_FAMILY_NOT_SUPPORTED)
    # Step 9: quotas -> 486 per user, 508 in all (with [redis], counting the other nodes'
    # allocations); while draining, 508 or 300 Try Alternate naming a node with room (§7.2 step 10).
    username = request.auth.username
    elsewhere = engine.elsewhere
    if engine.draining:
        raise no_room(engine, "draining", five_tuple)
    if settings.user_quota and (manager.user_count(username)
                                + (elsewhere.user_count(username) if elsewhere is not None else 0)
                                ) >= settings.user_quota:
        engine.counters.quota_hit("user")
        raise ProtocolViolation(ErrorCode.ALLOCATION_QUOTA_REACHED)
    if len(manager.allocations) + (elsewhere.total if elsewhere is not None else 0) >= settings.total_quota:
        engine.counters.quota_hit("total")
        raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
    lifetime = granted_lifetime(settings, first.get(AttrType.LIFETIME), allow_zero=False)
    auth = request.auth
    allocation = manager.new(five_tuple, username, auth.key, auth.sha256, request.to_client, lifetime, now)
    # Step 5, second half: the token must name a reservation we hold (508).
    reservation = None
    if token is not None:
        reservation = manager.claim(token, allocation)
        if reservation is None:
            raise ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
        families = [reservation.family]
    # The relayed transport addresses: one per family; the first is required (508 or 300 without
    # it), a second that fails is reported in ADDRESS-ERROR-CODE (RFC 8656 §7.2, dual allocation).
    extra: list[tuple[int, Any]] = []
    for index, family in enumerate(families):
        if family not in settings.relay_hosts:
            extra.append((AttrType.ADDRESS_ERROR_CODE, (2, ErrorCode.ADDRESS_FAMILY_NOT_SUPPORTED, "")))
            continue
        opened: tuple[int, Any] | None
        if reservation is not None:
            relay = reservation.relay
            opened = (reservation.port, relay) if relay is not None else None
        elif index == 0 and even_port is not None:
            # Step 6: EVEN-PORT; with R set the next port is held under a new RESERVATION-TOKEN.
            even = manager.open_even(allocation, family, bool(even_port[0] & 0x80), dont_fragment, now)
            opened = None
            if even is not None:
                port, relay, token_out = even
                opened = (port, relay)
                if token_out is not None:
                    extra.append((AttrType.RESERVATION_TOKEN, token_out))
        else:
            opened = manager.open_any(allocation, family, dont_fragment, tcp=tcp)
        if opened is None:
            if index == 0:
                manager.release_relays(allocation)
                raise no_room(engine, "ports", five_tuple)
            extra.append((AttrType.ADDRESS_ERROR_CODE, (2, ErrorCode.INSUFFICIENT_CAPACITY, "")))
            continue
        port, relay = opened
        manager.attach(allocation, family, port, relay, settings.advertised_hosts.get(family, relay.address[0]))
    if tcp:
        allocation.make_tcp()
    manager.add(allocation, settings.max_bps, now)
    if mobile:
        allocation.mobile = True
        extra.append((AttrType.MOBILITY_TICKET, issue_ticket(engine, allocation)))
    # The success response: XOR-RELAYED-ADDRESS (one per family), LIFETIME, RESERVATION-TOKEN or
    # ADDRESS-ERROR-CODE if any, XOR-MAPPED-ADDRESS (address values packed here, as the codec would).
    xor_key = MAGIC_COOKIE_BYTES + request.message.transaction_id
    attrs: list[tuple[int, Any]] = [
        (AttrType.XOR_RELAYED_ADDRESS, packed_xor_address(address, xor_key))
        for address in allocation.relayed_addresses.values()
    ]
    attrs.append((AttrType.LIFETIME, int(lifetime).to_bytes(4, "big")))
    attrs.extend(extra)
    attrs.append((AttrType.XOR_MAPPED_ADDRESS, packed_xor_address(five_tuple.client, xor_key)))
    return attrs


def issue_ticket(engine: TurnEngine, allocation: Any) -> bytes:
    """A new MOBILITY-TICKET for ``allocation`` (RFC 8016 §3.1, §3.2): older ones stop working.

    It is good for the allocation's lifetime plus the longest lifetime a Refresh could grant,
    so a client can always use its latest ticket while the allocation lives.
    """
    allocation.ticket_generation += 1
    return engine.tickets.seal(allocation.id, allocation.ticket_generation, allocation.username,
                               allocation.expires_at + engine.settings.max_lifetime_s)


def no_room(engine: TurnEngine, kind: str, five_tuple: FiveTuple) -> ProtocolViolation:
    """This node cannot take the allocation (``kind``): 300 Try Alternate naming a live node that
    can (RFC 8489 §10; UDP and TCP clients, same address family), else 508."""
    engine.counters.quota_hit(kind)
    elsewhere = engine.elsewhere
    if elsewhere is not None and five_tuple.transport not in (Transport.TLS, Transport.DTLS):
        family = 6 if ":" in five_tuple.client[0] else 4
        alternate = elsewhere.alternate(five_tuple.transport.name.lower(), family)
        if alternate is not None:
            return ProtocolViolation(ErrorCode.TRY_ALTERNATE, ((AttrType.ALTERNATE_SERVER, alternate),))
    return ProtocolViolation(ErrorCode.INSUFFICIENT_CAPACITY)
