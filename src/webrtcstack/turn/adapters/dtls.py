# -*- test-case-name: tests.integration.test_turn_dtls -*-
"""TURN over DTLS (RFC 7350): ``[turn] dtls = yes`` serves DTLS 1.2 on UDP at every ``tls_listen`` port.

One UDP socket per ``tls_listen`` endpoint (the same port as the TLS listener,
as coturn does), read without ``udp.Port``.  Every DTLS connection is a
pyOpenSSL ``Connection`` on memory BIOs: datagrams go in with ``bio_write``,
records come out with ``bio_read``, and the socket stays ours.

* **A new address gets no state until it proves it can receive** (RFC 6347
  §4.2.1): its ClientHello goes through ``DTLSv1_listen`` on a throw-away
  connection; without a valid cookie the answer is a HelloVerifyRequest
  whose cookie is an HMAC of the address under a per-process secret, and the
  connection is dropped.  A spoofed-source flood therefore costs one small
  answer per datagram and no memory.
* After the handshake, every record is one STUN/TURN message or ChannelData,
  given to the driver as from a datagram transport (``Transport.DTLS``, no
  ChannelData padding); replies and peer data go back as one record each.
* The certificate is the ``[tls]`` one, through the same certificate store, so
  a reload (SIGHUP, or an ACME renewal) reaches new DTLS handshakes too.
* A connection ends on close_notify, on a fatal alert, after
  ``IDLE_TIMEOUT_S`` without a datagram, or when the stack stops; its
  allocation ends with it, as for TLS over TCP.  At most
  ``[turn] max_tcp_connections`` connections at once (they are connections).

Handshake datagrams a flight writes at once are sent as one UDP datagram
(the memory BIO does not keep record boundaries); on loopback and on paths
with a 1500-byte MTU a flight with one certificate fits.
"""

from __future__ import annotations

import hmac
import os
import socket
from typing import Any

from OpenSSL import SSL
from twisted.application import service
from twisted.internet import task
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from webrtcstack.config import Endpoint
from webrtcstack.sockets import ListenerService, ListenFailed, make_socket
from webrtcstack.turn.adapters._ratelimit import RateLimitedLog
from webrtcstack.turn.five_tuple import Transport

__all__ = ["DtlsListener", "DtlsService", "IDLE_TIMEOUT_S"]

log = Logger()
#: a DTLS connection with no datagram for this long is closed (its allocation ends with it)
IDLE_TIMEOUT_S = 600.0
_SWEEP_S = 30.0
READS_PER_WAKEUP = 64
_HANDSHAKE = 22  # the DTLS record content type of a ClientHello


#: the cookie key: one per process, so no listener needs state to check another's cookie
_COOKIE_SECRET = os.urandom(32)


def cookie(conn: SSL.Connection) -> bytes:
    """The stateless cookie of the address on ``conn`` (RFC 6347 §4.2.1): an HMAC, 16 bytes."""
    host, port = conn.get_app_data()
    return hmac.digest(_COOKIE_SECRET, f"{host}|{port}".encode(), "sha256")[:16]


def cookie_ok(conn: SSL.Connection, value: bytes) -> bool:
    return hmac.compare_digest(value, cookie(conn))


class _Session:
    __slots__ = ("conn", "addr", "five_tuple", "ready", "last_seen", "timer", "to_client")

    def __init__(self, conn: SSL.Connection, addr: tuple[str, int], five_tuple: tuple[Any, ...], now: float) -> None:
        self.conn = conn
        self.addr = addr
        self.five_tuple = five_tuple
        self.ready = False
        self.last_seen = now
        self.timer: Any = None
        self.to_client: Any = None


@implementer(IReadDescriptor)
class DtlsListener:
    """One UDP socket carrying DTLS connections to the TURN driver."""

    def __init__(self, driver: Any, sock: socket.socket, store: Any, max_sessions: int,
                 legacy: bool = False) -> None:
        self.driver = driver
        #: ``dtls_min_version = 1.0``: DTLS 1.0 too
        self.legacy = legacy
        self.reactor = driver.reactor
        self.sock = sock
        self.store = store
        self.max_sessions = max_sessions
        self.server: tuple[str, int] = sock.getsockname()[:2]
        self._fd = sock.fileno()
        self.sessions: dict[tuple[str, int], _Session] = {}
        self._failure_log = RateLimitedLog(log, self.reactor, 10.0)
        #: what happened, for tests and /metrics (turn_dtls_events): the engine's counters' ``dtls`` dict
        self.counts: dict[str, int] = driver.engine.counters.dtls

    def _context(self) -> SSL.Context:
        ctx: SSL.Context = self.store.dtls_context(cookie, cookie_ok, legacy=self.legacy)
        return ctx

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- datagrams ------------------------------------------------------------

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "TurnDtls"

    def connectionLost(self, reason: Any) -> None:
        self.close()

    def doRead(self) -> None:
        for _ in range(READS_PER_WAKEUP):
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.datagram(data, addr[:2])

    def datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        session = self.sessions.get(addr)
        if session is None:
            self._new_client(data, addr)
            return
        session.last_seen = self.reactor.seconds()
        try:
            session.conn.bio_write(data)
            if not session.ready:
                self._handshake(session)
            if session.ready:
                self._records(session)
        except SSL.ZeroReturnError:  # close_notify
            self._end(session, "closed")
            return
        except SSL.Error:
            self._count("fatal")
            self._end(session, "failed")
            return
        self._flush(session)

    def _new_client(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data or data[0] != _HANDSHAKE:
            self._count("not_a_hello")
            return
        if len(self.sessions) >= self.max_sessions:
            self._count("refused_full")
            return
        conn = SSL.Connection(self._context(), None)
        conn.set_accept_state()
        conn.set_app_data(addr)
        try:
            conn.bio_write(data)
            conn.DTLSv1_listen()
        except SSL.WantReadError:
            # no valid cookie yet: a HelloVerifyRequest is in the BIO (or nothing, for a bad datagram);
            # send it and keep nothing
            self._send_pending(conn, addr)
            self._count("cookie_sent")
            return
        except SSL.Error:
            self._count("bad_hello")
            return
        now = self.reactor.seconds()
        session = _Session(conn, addr, (Transport.DTLS, addr, self.server), now)
        self.sessions[addr] = session
        try:
            self._handshake(session)
        except SSL.Error:
            self._count("fatal")
            self._end(session, "failed")
            return
        self._flush(session)

    def _handshake(self, session: _Session) -> None:
        try:
            session.conn.do_handshake()
        except SSL.WantReadError:
            self._arm(session)
            return
        session.ready = True
        self._count("handshakes")
        if session.timer is not None and session.timer.active():
            session.timer.cancel()
        session.timer = None
        session.to_client = self._sender(session)

    def _arm(self, session: _Session) -> None:
        """The handshake's retransmission timer (DTLSv1_get_timeout)."""
        if session.timer is not None and session.timer.active():
            session.timer.cancel()
        timeout = session.conn.DTLSv1_get_timeout()
        if timeout is not None:
            session.timer = self.reactor.callLater(max(timeout, 0.01), self._retransmit, session)

    def _retransmit(self, session: _Session) -> None:
        session.timer = None
        if self.sessions.get(session.addr) is not session or session.ready:
            return
        try:
            session.conn.DTLSv1_handle_timeout()
        except SSL.Error:
            self._end(session, "failed")
            return
        self._flush(session)
        self._arm(session)

    def _records(self, session: _Session) -> None:
        driver = self.driver
        now = self.reactor.seconds()
        while True:
            try:
                record = session.conn.recv(65535)
            except SSL.WantReadError:
                return
            if record:
                try:
                    driver.handle_client(session.five_tuple, record, session.to_client, now)
                except Exception as e:  # a bug must not stop the listener (as on the UDP listener), nor log per packet
                    self._count("handler_error")
                    self._failure_log.warn("TURN over DTLS: error handling a record from {source}: {error!r}",
                                           source=session.addr, error=e)

    def _sender(self, session: _Session) -> Any:
        def send(data: bytes) -> None:
            if self.sessions.get(session.addr) is not session:
                return
            try:
                session.conn.send(data)
            except SSL.Error:
                self.driver.engine.counters.drop("send_error")
                return
            self._flush(session)

        return send

    def _flush(self, session: _Session) -> None:
        self._send_pending(session.conn, session.addr)

    def _send_pending(self, conn: SSL.Connection, addr: tuple[str, int]) -> None:
        while True:
            try:
                out = conn.bio_read(65535)
            except SSL.WantReadError:
                return
            try:
                self.sock.sendto(out, addr)
            except OSError:
                self.driver.engine.counters.drop("send_error")

    def _end(self, session: _Session, why: str) -> None:
        if self.sessions.get(session.addr) is not session:
            return
        del self.sessions[session.addr]
        if session.timer is not None and session.timer.active():
            session.timer.cancel()
        session.timer = None
        self._count(why)
        try:
            session.conn.shutdown()
            self._flush(session)
        except SSL.Error:
            pass
        self.driver.connection_lost(session.five_tuple)

    def sweep(self) -> None:
        """Close connections idle for IDLE_TIMEOUT_S."""
        cutoff = self.reactor.seconds() - IDLE_TIMEOUT_S
        for session in [s for s in self.sessions.values() if s.last_seen < cutoff]:
            self._end(session, "idle")

    def close(self) -> None:
        for session in list(self.sessions.values()):
            self._end(session, "stopped")
        if self._fd >= 0:
            self.reactor.removeReader(self)
            self._fd = -1
            self.sock.close()


class DtlsService(ListenerService):
    """Binds the DTLS socket of one ``tls_listen`` endpoint on start, closes it (and its connections) on stop."""

    def __init__(self, driver: Any, endpoint: Endpoint, store: Any, max_sessions: int, legacy: bool = False) -> None:
        ListenerService.__init__(self, driver.reactor, "udp", endpoint, None, what="turns")
        self.legacy = legacy
        self.driver = driver
        self.store = store
        self.max_sessions = max_sessions
        self.listener: DtlsListener | None = None
        self._sweep: task.LoopingCall | None = None

    def startService(self) -> None:
        try:
            sock = make_socket(socket.SOCK_DGRAM, self.endpoint.host, self.endpoint.port)
        except OSError as e:
            raise ListenFailed(self.what, self.kind, self.endpoint, e) from None
        self.listener = DtlsListener(self.driver, sock, self.store, self.max_sessions, legacy=self.legacy)
        self.reactor.addReader(self.listener)
        service.Service.startService(self)
        self._sweep = task.LoopingCall(self.listener.sweep)
        self._sweep.clock = self.reactor
        self._sweep.start(_SWEEP_S, now=False)
        log.info("TURN over DTLS listening on udp {address}", address=str(Endpoint(*self.listener.server)))

    def stopService(self) -> None:
        service.Service.stopService(self)
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        self._sweep = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
