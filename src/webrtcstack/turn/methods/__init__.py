"""One module per TURN method (RFC 8656), each written as the RFC's numbered steps.

:data:`REQUEST_HANDLERS` is the dispatch table the engine reads: every
handler is called as ``handler(engine, request, now)`` after authentication
and returns the success response's attributes, or raises
:class:`~webrtcstack.stun.errors.ProtocolViolation` with an ``ErrorCode``.
Send indications (:func:`handle_send`) get no response.
"""

from __future__ import annotations

from webrtcstack.stun.constants import Method
from webrtcstack.turn.methods.allocate import handle_allocate
from webrtcstack.turn.methods.channel_bind import handle_channel_bind
from webrtcstack.turn.methods.common import Handler, Request, ResponseLater
from webrtcstack.turn.methods.connect import handle_connect, handle_connection_bind
from webrtcstack.turn.methods.create_permission import handle_create_permission
from webrtcstack.turn.methods.refresh import handle_refresh
from webrtcstack.turn.methods.send import handle_send

__all__ = ["REQUEST_HANDLERS", "Request", "ResponseLater", "handle_send"]

REQUEST_HANDLERS: dict[int, Handler] = {
    Method.ALLOCATE: handle_allocate,                    # §7.2
    Method.REFRESH: handle_refresh,                      # §7.3
    Method.CREATE_PERMISSION: handle_create_permission,  # §9.2
    Method.CHANNEL_BIND: handle_channel_bind,            # §12.2
    Method.CONNECT: handle_connect,                      # RFC 6062 §5.2
    Method.CONNECTION_BIND: handle_connection_bind,      # RFC 6062 §5.4
}
