"""Hypothesis strategies for STUN messages, and the deterministic profile these tests use."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from webrtcstack.stun.constants import AttrType, MessageClass, Method

#: Fixed and bounded: the same examples on every run (STYLE.md, Tests).
DETERMINISTIC = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ipv4_hosts = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6_hosts = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
ports = st.integers(0, 65535)
addresses = st.tuples(st.one_of(ipv4_hosts, ipv6_hosts), ports)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
u32 = st.integers(0, 2**32 - 1)

#: One strategy per attribute type whose typed value round-trips exactly.
ATTRIBUTE_VALUES: dict[int, st.SearchStrategy[Any]] = {
    AttrType.MAPPED_ADDRESS: addresses,
    AttrType.XOR_MAPPED_ADDRESS: addresses,
    AttrType.XOR_PEER_ADDRESS: addresses,
    AttrType.XOR_RELAYED_ADDRESS: addresses,
    AttrType.ALTERNATE_SERVER: addresses,
    AttrType.RESPONSE_ORIGIN: addresses,
    AttrType.OTHER_ADDRESS: addresses,
    AttrType.USERNAME: text,
    AttrType.REALM: text,
    AttrType.NONCE: text,
    AttrType.SOFTWARE: text,
    AttrType.ALTERNATE_DOMAIN: text,
    AttrType.ERROR_CODE: st.tuples(st.integers(300, 699), text),
    AttrType.ADDRESS_ERROR_CODE: st.tuples(st.sampled_from([1, 2]), st.integers(300, 699), text),
    AttrType.UNKNOWN_ATTRIBUTES: st.lists(st.integers(0, 0xFFFF), max_size=6).map(tuple),
    AttrType.LIFETIME: u32,
    AttrType.PRIORITY: u32,
    AttrType.CHANGE_REQUEST: u32,
    AttrType.CONNECTION_ID: u32,
    AttrType.ICE_CONTROLLED: st.integers(0, 2**64 - 1),
    AttrType.ICE_CONTROLLING: st.integers(0, 2**64 - 1),
    AttrType.CHANNEL_NUMBER: st.integers(0, 0xFFFF),
    AttrType.RESPONSE_PORT: st.integers(0, 0xFFFF),
    AttrType.REQUESTED_TRANSPORT: st.integers(0, 255),
    AttrType.REQUESTED_ADDRESS_FAMILY: st.integers(0, 255),
    AttrType.ADDITIONAL_ADDRESS_FAMILY: st.integers(0, 255),
    AttrType.EVEN_PORT: st.booleans(),
    AttrType.DONT_FRAGMENT: st.just(True),
    AttrType.USE_CANDIDATE: st.just(True),
    AttrType.PASSWORD_ALGORITHM: st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=9)),
    AttrType.PASSWORD_ALGORITHMS: st.lists(
        st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=9)), max_size=3).map(tuple),
    AttrType.ICMP: st.tuples(st.integers(0, 127), st.integers(0, 255), u32),
    AttrType.DATA: st.binary(max_size=64),
    AttrType.RESERVATION_TOKEN: st.binary(min_size=8, max_size=8),
    AttrType.USERHASH: st.binary(min_size=32, max_size=32),
    AttrType.PADDING: st.binary(max_size=16),
}

#: Types the codec does not know: kept as raw bytes.
unknown_attribute = st.tuples(
    st.integers(0, 0xFFFF).filter(lambda t: t not in {int(a) for a in AttrType}), st.binary(max_size=24))

attribute = st.one_of(
    st.sampled_from(sorted(ATTRIBUTE_VALUES)).flatmap(
        lambda t: st.tuples(st.just(AttrType(t)), ATTRIBUTE_VALUES[t])),
    unknown_attribute,
)

methods = st.one_of(st.sampled_from(list(Method)), st.integers(0, 0xFFF))
transaction_ids = st.one_of(
    st.binary(min_size=12, max_size=12),
    # RFC 3489 ids: 16 bytes that do not start with the magic cookie.
    st.binary(min_size=16, max_size=16).filter(lambda b: b[:4] != b"\x21\x12\xa4\x42"),
)
attribute_lists = st.lists(attribute, max_size=8).map(tuple)
message_classes = st.sampled_from(list(MessageClass))
