#!/usr/bin/env python3
"""The Python path's socket-call levers (issue 15), each timed in process on loopback.

What one UDP datagram costs through each way CPython can receive or send it,
so a change to the relay's socket calls is chosen on figures:

* ``recvfrom`` until ``EAGAIN`` (what the relay does) against one ``recvmmsg``
  through ``ctypes`` (the raw address bytes looked up in a table instead of
  formatted), for 1, 2, 5 and 20 datagrams queued per call;
* ``recvfrom(65535)`` against ``recvfrom(2048)`` and ``recvfrom_into`` a
  preallocated buffer;
* ``sendto(data, address)`` against ``send`` on a connected socket.

Every figure is the best of ``--repeat`` runs, in µs per datagram; the
sender's own ``sendto`` is outside the timed part of the receive rows.

Usage::

    python bench/udp_calls.py [--repeat N]
"""

from __future__ import annotations

import argparse
import ctypes
import socket
import time
from typing import Any, Callable

PAYLOAD = b"\x40\x00\x00\x64" + b"x" * 100
VLEN, SLOT = 64, 2048
MSG_DONTWAIT = 0x40


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32), ("msg_iov", ctypes.c_void_p),
                ("msg_iovlen", ctypes.c_size_t), ("msg_control", ctypes.c_void_p),
                ("msg_controllen", ctypes.c_size_t), ("msg_flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


class Mmsg:
    """``recvmmsg`` on one socket: ``VLEN`` slots of ``SLOT`` bytes and their addresses, made once."""

    def __init__(self, sock: socket.socket) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.call = libc.recvmmsg
        self.call.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
        self.call.restype = ctypes.c_int
        self.fd = sock.fileno()
        self.data = bytearray(VLEN * SLOT)
        self.names = bytearray(VLEN * 16)
        data_at = ctypes.addressof((ctypes.c_char * len(self.data)).from_buffer(self.data))
        names_at = ctypes.addressof((ctypes.c_char * len(self.names)).from_buffer(self.names))
        self.iovs = (_Iovec * VLEN)()
        self.msgs = (_Mmsghdr * VLEN)()
        for i in range(VLEN):
            self.iovs[i].iov_base, self.iovs[i].iov_len = data_at + i * SLOT, SLOT
            header = self.msgs[i].msg_hdr
            header.msg_name, header.msg_namelen = names_at + i * 16, 16
            header.msg_iov, header.msg_iovlen = ctypes.addressof(self.iovs[i]), 1
        self.at = ctypes.addressof(self.msgs)
        self.addresses: dict[bytes, tuple[str, int]] = {}

    def receive(self) -> list[tuple[bytes, tuple[str, int]]]:
        n = self.call(self.fd, self.at, VLEN, MSG_DONTWAIT, None)
        out = []
        data, names, msgs, addresses = memoryview(self.data), self.names, self.msgs, self.addresses
        for i in range(max(n, 0)):
            key = bytes(names[i * 16 + 2:i * 16 + 8])  # port and IPv4 address, as the kernel wrote them
            address = addresses.get(key)
            if address is None:
                address = addresses[key] = (socket.inet_ntoa(key[2:]), int.from_bytes(key[:2], "big"))
            out.append((bytes(data[i * SLOT:i * SLOT + msgs[i].msg_len]), address))
        return out


def udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    return s


def best(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the best is printed (default 3)")
    args = parser.parse_args()
    receiver = udp_socket()
    target = receiver.getsockname()
    senders = [udp_socket() for _ in range(20)]
    mmsg = Mmsg(receiver)

    def drain_by_recvfrom() -> list[Any]:
        out, recvfrom = [], receiver.recvfrom
        while True:
            try:
                out.append(recvfrom(65535))
            except BlockingIOError:
                return out

    def receive_rows(k: int, read: Callable[[], list[Any]], rounds: int = 3000) -> float:
        def run() -> float:
            total = 0.0
            for _ in range(rounds):
                for s in senders[:k]:
                    s.sendto(PAYLOAD, target)
                start = time.perf_counter()
                got = read()
                total += time.perf_counter() - start
                assert len(got) == k, (len(got), k)
            return total / (rounds * k) * 1e6
        return best(args.repeat, run)

    print(f"{'receive, per datagram':58} µs")
    for k in (1, 2, 5, 20):
        print(f"  {k:2} queued: recvfrom until EAGAIN {receive_rows(k, drain_by_recvfrom):25.3f}")
        print(f"  {k:2} queued: one recvmmsg (ctypes) {receive_rows(k, mmsg.receive):26.3f}")

    buffer = bytearray(65536)
    view = memoryview(buffer)

    def one_by(read: Callable[[], Any], rounds: int = 200, batch: int = 200) -> float:
        def run() -> float:
            total = 0.0
            for _ in range(rounds):
                for _ in range(batch):
                    senders[0].sendto(PAYLOAD, target)
                start = time.perf_counter()
                for _ in range(batch):
                    read()
                total += time.perf_counter() - start
            return total / (rounds * batch) * 1e6
        return best(args.repeat, run)

    def into() -> Any:
        n, address = receiver.recvfrom_into(buffer)
        return view[:n], address

    print(f"  recvfrom(65535) {one_by(lambda: receiver.recvfrom(65535)):42.3f}")
    print(f"  recvfrom(2048) {one_by(lambda: receiver.recvfrom(2048)):43.3f}")
    print(f"  recvfrom_into a preallocated buffer {one_by(into):22.3f}")

    connected = udp_socket()
    connected.connect(target)
    plain = senders[0]

    def send_rows(send: Callable[[], Any], rounds: int = 200, batch: int = 200) -> float:
        def run() -> float:
            total = 0.0
            for _ in range(rounds):
                start = time.perf_counter()
                for _ in range(batch):
                    send()
                total += time.perf_counter() - start
                drain_by_recvfrom()
            return total / (rounds * batch) * 1e6
        return best(args.repeat, run)

    print(f"{'send, per datagram (the kernel delivers it on loopback)':58}")
    print(f"  sendto(data, address) {send_rows(lambda: plain.sendto(PAYLOAD, target)):35.3f}")
    print(f"  send(data) on a connected socket {send_rows(lambda: connected.send(PAYLOAD)):24.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
