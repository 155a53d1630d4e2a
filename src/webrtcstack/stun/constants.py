# -*- test-case-name: tests.stun.test_message -*-
"""Wire constants of STUN (RFC 8489) and its TURN extensions (RFC 8656).

Methods, classes, attribute types and error codes are :class:`enum.IntEnum`
members, so they compare equal to the raw integers read off the wire and
print with their RFC names.
"""

from __future__ import annotations

import enum

__all__ = [
    "MAGIC_COOKIE",
    "MAGIC_COOKIE_BYTES",
    "HEADER_LENGTH",
    "FINGERPRINT_XOR",
    "CHANNEL_DATA_HEADER_LENGTH",
    "Method",
    "MessageClass",
    "AttrType",
    "ErrorCode",
    "REASON_PHRASES",
    "AddressFamily",
]

#: RFC 8489 §5: the fixed value in bytes 4-7 of every RFC 5389+ message.
MAGIC_COOKIE = 0x2112A442
MAGIC_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
#: RFC 8489 §5: type (2), length (2), cookie (4), transaction id (12).
HEADER_LENGTH = 20
#: RFC 8489 §14.7: the CRC-32 is XORed with this ("STUN" in ASCII).
FINGERPRINT_XOR = 0x5354554E
#: RFC 8656 §12.4: channel number (2) and length (2).
CHANNEL_DATA_HEADER_LENGTH = 4


class Method(enum.IntEnum):
    """STUN methods (RFC 8489 §18.2, RFC 8656 §17)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009
    # RFC 6062 (TURN TCP relaying).
    CONNECT = 0x00A
    CONNECTION_BIND = 0x00B
    CONNECTION_ATTEMPT = 0x00C


class MessageClass(enum.IntEnum):
    """The two class bits C1 C0 of the message type (RFC 8489 §5)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class AttrType(enum.IntEnum):
    """Attribute types (RFC 8489 §18.3, RFC 8656 §18, RFC 8445, RFC 5780, RFC 6062).

    Types below 0x8000 are comprehension-required: an agent that does not
    understand one must reject the request with 420 (RFC 8489 §7.3.1).
    """

    # Comprehension-required range 0x0000-0x7FFF.
    MAPPED_ADDRESS = 0x0001
    CHANGE_REQUEST = 0x0003  # RFC 5780 §7.2 (RFC 3489 reused)
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PADDING = 0x0026  # RFC 5780 §7.6
    RESPONSE_PORT = 0x0027  # RFC 5780 §7.5
    CONNECTION_ID = 0x002A  # RFC 6062 §6.2.1
    # Comprehension-optional range 0x8000-0xFFFF.
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    ICMP = 0x8004
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B  # RFC 5780 §7.3
    OTHER_ADDRESS = 0x802C  # RFC 5780 §7.4
    MOBILITY_TICKET = 0x8030  # RFC 8016 §3.5


class ErrorCode(enum.IntEnum):
    """ERROR-CODE values (RFC 8489 §14.8, RFC 8656 §18, RFC 6062, RFC 8016)."""

    TRY_ALTERNATE = 300
    BAD_REQUEST = 400
    UNAUTHENTICATED = 401
    FORBIDDEN = 403
    MOBILITY_FORBIDDEN = 405  # RFC 8016 §3.4
    UNKNOWN_ATTRIBUTE = 420
    ALLOCATION_MISMATCH = 437
    STALE_NONCE = 438
    ADDRESS_FAMILY_NOT_SUPPORTED = 440
    WRONG_CREDENTIALS = 441
    UNSUPPORTED_TRANSPORT_PROTOCOL = 442
    PEER_ADDRESS_FAMILY_MISMATCH = 443
    CONNECTION_ALREADY_EXISTS = 446  # RFC 6062
    CONNECTION_TIMEOUT_OR_FAILURE = 447  # RFC 6062
    ALLOCATION_QUOTA_REACHED = 486
    ROLE_CONFLICT = 487  # RFC 8445 §7.3.1.1
    SERVER_ERROR = 500
    INSUFFICIENT_CAPACITY = 508


#: The reason phrases the RFCs suggest (RFC 8489 §14.8, RFC 8656 §18).
REASON_PHRASES: dict[int, str] = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthenticated",
    403: "Forbidden",
    405: "Mobility Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    446: "Connection Already Exists",
    447: "Connection Timeout or Failure",
    486: "Allocation Quota Reached",
    487: "Role Conflict",
    500: "Server Error",
    508: "Insufficient Capacity",
}


class AddressFamily(enum.IntEnum):
    """The family byte of (XOR-)MAPPED-ADDRESS and REQUESTED-ADDRESS-FAMILY (RFC 8489 §14.1)."""

    IPV4 = 0x01
    IPV6 = 0x02
