# -*- test-case-name: tests.turn.test_dispatch -*-
"""The epoll reactor's dispatch, without the legacy log context for the relay's own sockets.

For every ready descriptor, Twisted's epoll reactor calls
``log.callWithLogger(selectable, self._doReadOrWrite, ...)``. That asks the
descriptor for its ``logPrefix``, copies a context dictionary so that legacy
``twisted.python.log`` lines emitted during the call carry it, and catches
what escapes. In process this costs about 1.2 µs per wake-up, on top of
the read itself. A relayed datagram takes one wake-up at paced loads, so the
relay pays this once per packet, on the client side and again on the peer
side.

The TURN UDP listeners, relay sockets and TCP client connections log
nothing through that context: they use ``twisted.logger`` with their own
namespaces, and the listener's ``doRead`` counts and logs its own failures. :func:`register` puts their classes on
a list that the reactor serves through ``_doReadOrWrite`` directly, with the
same disconnect handling, errors logged the same way, and no context.
Every other descriptor (HTTP, WebSocket, TLS, RFC 6062 peer connections)
is served exactly as before, log prefix included. ``build_turn_services``
registers the three classes.

Only Twisted's own ``EPollReactor`` (the default on Linux) is changed, and
only on the instance. The loop below is the one in its ``doPoll`` (Twisted
26.10), with that one branch added. Any other reactor, including a
``task.Clock`` in tests, is left alone and :func:`register` returns False.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.logger import Logger
from twisted.python import log as legacy_log

__all__ = ["register", "is_direct"]

log = Logger("webrtcstack.turn")

#: the attribute on a patched reactor holding the classes it serves directly
_KINDS = "_webrtcstack_direct_kinds"


def _patchable(reactor: Any) -> bool:
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not Linux
        return False
    return (isinstance(reactor, EPollReactor) and type(reactor).doIteration is EPollReactor.doPoll
            and all(hasattr(reactor, name) for name in ("_poller", "_selectables", "_doReadOrWrite")))


def register(reactor: Any, kind: type) -> bool:
    """Serve descriptors of class ``kind`` (exactly; not subclasses) without the log context.

    :returns: False if ``reactor`` is not an epoll reactor this module knows
        (nothing is changed then); True once ``kind`` is served directly.
    """
    kinds: set[type] | None = getattr(reactor, _KINDS, None)
    if kinds is None:
        if not _patchable(reactor):
            return False
        kinds = set()
        setattr(reactor, _KINDS, kinds)
        reactor.doIteration = _do_poll(reactor, kinds)
    kinds.add(kind)
    return True


def is_direct(reactor: Any, selectable: Any) -> bool:
    """Whether ``reactor`` serves ``selectable`` without the log context."""
    return type(selectable) in getattr(reactor, _KINDS, ())


def _do_poll(reactor: Any, kinds: set[type]) -> Any:
    selectables: dict[int, Any] = reactor._selectables
    serve = reactor._doReadOrWrite

    def doPoll(timeout: float | None) -> None:
        if timeout is None:
            timeout = -1  # wait until something is ready
        try:
            # At most as many events as descriptors, as Twisted's own loop asks.
            events = reactor._poller.poll(timeout, len(selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if type(selectable) in kinds:
                try:
                    serve(selectable, fd, event)
                except Exception:
                    log.failure("serving {selectable!r}", selectable=selectable)
            else:
                legacy_log.callWithLogger(selectable, serve, selectable, fd, event)

    return doPoll
