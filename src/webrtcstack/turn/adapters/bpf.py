# -*- test-case-name: tests.integration.test_turn_offload -*-
"""The kernel side of the offload: build, load and attach the XDP program, and read and write its maps.

This is the shell's I/O (STYLE.md): the ``bpf(2)`` system call through ctypes,
a small ELF reader, and ``clang``.  No libbpf: the program (``turn_xdp.c``)
uses no BTF and only two legacy map definitions, so loading it is four steps
this module does itself:

1. ``clang -O2 -target bpf -c turn_xdp.c`` (Debian's ``clang``; the object is
   cached by the source's hash, so it is built once per machine),
2. ``BPF_MAP_CREATE`` for each map in the object's ``maps`` section (the size
   comes from the config),
3. patch each ``ld_imm64`` the object's ``.relxdp`` names with the map's file
   descriptor and ``BPF_PROG_LOAD`` the ``xdp`` section as an XDP program,
4. ``BPF_LINK_CREATE`` it on each interface.

The attachment is a BPF *link* that is never pinned, so it lives exactly as
long as this process holds its file descriptor: the kernel detaches the
program and frees the maps when the process exits, however it exits (a
``kill -9`` included).  A crashed process leaves nothing behind to clean.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import platform
import shutil
import socket
import struct
import subprocess
import tempfile
from pathlib import Path

__all__ = ["BpfError", "BpfMap", "XdpProgram", "SOURCE", "build_object", "load_program"]

SOURCE = Path(__file__).parent.parent / "offload" / "turn_xdp.c"

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_MAP_CREATE, _MAP_LOOKUP, _MAP_UPDATE, _MAP_DELETE, _MAP_NEXT_KEY, _PROG_LOAD = 0, 1, 2, 3, 4, 5
_MAP_LOOKUP_BATCH = 24
_LINK_CREATE = 28
_PROG_TYPE_XDP = 6
_ATTACH_XDP = 37
_LD_IMM64 = 0x18
_PSEUDO_MAP_FD = 1
_ATTR_SIZE = 128

_libc = ctypes.CDLL(None, use_errno=True)


class BpfError(OSError):
    """A ``bpf(2)`` call, the build or the attachment failed; the message says which and why."""


_NR_BPF = _SYS_BPF.get(platform.machine())
_syscall = _libc.syscall


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    if _NR_BPF is None:
        raise BpfError(errno.ENOSYS, f"{what}: bpf(2) is not known on {platform.machine()}")
    result = _syscall(_NR_BPF, cmd, attr, _ATTR_SIZE)
    if result < 0:
        code = ctypes.get_errno()
        hint = ""
        if code in (errno.EPERM, errno.EACCES):
            hint = " (the process needs CAP_BPF and CAP_NET_ADMIN, or root)"
        raise BpfError(code, f"{what}: {os.strerror(code)}{hint}")
    return int(result)


def _attr(fmt: str, *values: object) -> ctypes.Array[ctypes.c_char]:
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(fmt, buf, 0, *values)
    return buf


class BpfMap:
    """One BPF hash map: fixed-size byte keys and values."""

    def __init__(self, name: str, map_type: int, key_size: int, value_size: int, max_entries: int) -> None:
        self.name = name
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.fd = _bpf(_MAP_CREATE, _attr("<IIIIIII16s", map_type, key_size, value_size, max_entries, 0, 0, 0,
                                          name.encode()[:15]), f"creating BPF map {name}")
        self._key = ctypes.create_string_buffer(key_size)
        self._value = ctypes.create_string_buffer(value_size)
        # The key and value buffers never move, so one attribute block serves every call (the collection
        # reads two entries per channel each second: a new block per call cost half of each lookup).
        self._attr_value = _attr("<IxxxxQQQ", self.fd, ctypes.addressof(self._key), ctypes.addressof(self._value), 0)
        self._attr_no_value = _attr("<IxxxxQQQ", self.fd, ctypes.addressof(self._key), 0, 0)

    def _elem(self, cmd: int, key: bytes, value: ctypes.Array[ctypes.c_char] | None, flags: int, what: str) -> int:
        ctypes.memmove(self._key, key, self.key_size)
        return _bpf(cmd, self._attr_value if value is not None else self._attr_no_value, what)

    def update(self, key: bytes, value: bytes) -> None:
        """Insert or replace (``BPF_ANY``); :class:`BpfError` with ``E2BIG`` when the map is full."""
        ctypes.memmove(self._value, value, self.value_size)
        self._elem(_MAP_UPDATE, key, self._value, 0, "writing a BPF map")

    def lookup(self, key: bytes) -> bytes | None:
        try:
            self._elem(_MAP_LOOKUP, key, self._value, 0, "reading a BPF map")
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        return self._value.raw

    def delete(self, key: bytes) -> bool:
        try:
            self._elem(_MAP_DELETE, key, None, 0, "deleting from a BPF map")
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True

    def items(self) -> dict[bytes, bytes]:
        """Every entry, read with ``BPF_MAP_LOOKUP_BATCH`` (a few thousand per call instead of one).

        :raises BpfError: ``EINVAL``/``ENOTSUP`` where the kernel has no batch lookup for this map
            (before Linux 5.6); the caller then looks entries up one by one.
        """
        chunk = max(1, min(self.max_entries, 4096))
        keys = ctypes.create_string_buffer(self.key_size * chunk)
        values = ctypes.create_string_buffer(self.value_size * chunk)
        token_in = ctypes.create_string_buffer(max(self.key_size, 8))
        token_out = ctypes.create_string_buffer(max(self.key_size, 8))
        out: dict[bytes, bytes] = {}
        first = True
        while True:
            attr = _attr("<QQQQIIQQ", 0 if first else ctypes.addressof(token_in), ctypes.addressof(token_out),
                         ctypes.addressof(keys), ctypes.addressof(values), chunk, self.fd, 0, 0)
            done = False
            try:
                _bpf(_MAP_LOOKUP_BATCH, attr, "reading a BPF map in batches")
            except BpfError as e:
                if e.errno != errno.ENOENT:  # ENOENT: the last batch (possibly empty)
                    raise
                done = True
            count = struct.unpack_from("<I", attr, 32)[0]
            raw_keys, raw_values = keys.raw, values.raw
            ks, vs = self.key_size, self.value_size
            for i in range(count):
                out[raw_keys[i * ks:(i + 1) * ks]] = raw_values[i * vs:(i + 1) * vs]
            if done or len(out) > self.max_entries:
                return out
            ctypes.memmove(token_in, token_out, len(token_out))
            first = False

    def keys(self) -> list[bytes]:
        """Every key now in the map (for tests and the operator's view)."""
        out: list[bytes] = []
        previous: bytes | None = None
        following = ctypes.create_string_buffer(self.key_size)
        while len(out) <= self.max_entries:
            ctypes.memmove(self._key, previous or bytes(self.key_size), self.key_size)
            attr = _attr("<IxxxxQQQ", self.fd, ctypes.addressof(self._key) if previous is not None else 0,
                         ctypes.addressof(following), 0)
            try:
                _bpf(_MAP_NEXT_KEY, attr, f"listing {self.name}")
            except BpfError as e:
                if e.errno == errno.ENOENT:
                    break
                raise
            previous = following.raw
            out.append(previous)
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class XdpProgram:
    """The loaded program, its maps, and the interfaces it is attached to (one link each)."""

    def __init__(self, fd: int, maps: dict[str, BpfMap]) -> None:
        self.fd = fd
        self.maps = maps
        #: interface name → the link's file descriptor
        self.links: dict[str, int] = {}

    def attach(self, interface: str) -> None:
        """Attach to ``interface`` (the driver's XDP if it has one, else generic XDP)."""
        try:
            ifindex = socket.if_nametoindex(interface)
        except OSError as e:
            raise BpfError(errno.ENODEV, f"attaching XDP to {interface}: no such interface") from e
        self.links[interface] = _bpf(_LINK_CREATE, _attr("<IIII", self.fd, ifindex, _ATTACH_XDP, 0),
                                     f"attaching XDP to {interface}")

    def close(self) -> None:
        """Detach from every interface and free the program and its maps."""
        for fd in self.links.values():
            os.close(fd)
        self.links.clear()
        for bpf_map in self.maps.values():
            bpf_map.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def build_object(cache_dir: str | None = None) -> Path:
    """Compile ``turn_xdp.c`` with clang (once; cached by the source's hash).

    The object goes to ``$CACHE_DIRECTORY/webrtcstack`` (systemd's ``CacheDirectory=``), else
    ``$XDG_CACHE_HOME/webrtcstack``, else ``~/.cache/webrtcstack``.
    """
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    # systemd's CacheDirectory= (the unit's), else the XDG cache of the user
    cache = Path(cache_dir or os.environ.get("CACHE_DIRECTORY") or os.environ.get("XDG_CACHE_HOME")
                 or Path.home() / ".cache") / "webrtcstack"
    target = cache / f"turn_xdp-{digest}.o"
    if target.exists():
        return target
    clang = shutil.which("clang")
    if clang is None:
        raise BpfError(errno.ENOENT, "building the XDP program: clang is not installed (Debian: apt-get install clang)")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".o", delete=False) as tmp:
            pass
    except OSError as e:
        raise BpfError(e.errno or errno.EACCES, f"building the XDP program: cannot write to {cache}: "
                                                f"{e.strerror or e} (set CACHE_DIRECTORY or XDG_CACHE_HOME)") from None
    try:
        result = subprocess.run([clang, "-O2", "-target", "bpf", "-c", str(SOURCE), "-o", tmp.name],
                                capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        os.unlink(tmp.name)
        raise BpfError(errno.EIO, f"building the XDP program: clang did not run: {e}") from None
    if result.returncode != 0:
        os.unlink(tmp.name)
        raise BpfError(errno.EINVAL, f"building the XDP program: clang failed: {result.stderr.strip()[:2000]}")
    os.replace(tmp.name, target)
    return target


def _sections(elf: bytes) -> dict[str, tuple[int, int, int, int]]:
    """Section name → (type, offset, size, link) of a 64-bit little-endian ELF object."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise BpfError(errno.ENOEXEC, "loading the XDP program: not a 64-bit little-endian ELF object")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]

    def name(offset: int) -> str:
        end = elf.index(b"\0", names_at + offset)
        return elf[names_at + offset:end].decode()

    out = {}
    for index, h in enumerate(headers):
        out[name(h[0])] = (h[1], h[4], h[5], h[6])
        out[f"#{index}"] = (h[1], h[4], h[5], h[6])
    return out


def load_program(path: Path, max_entries: int) -> XdpProgram:
    """Create the maps (``max_entries`` each), patch the program's map references and load it."""
    elf = path.read_bytes()
    sections = _sections(elf)
    try:
        _, code_at, code_size, _ = sections["xdp"]
        _, maps_at, _, _ = sections["maps"]
        _, rel_at, rel_size, symtab_index = sections[".relxdp"]
        _, license_at, license_size, _ = sections["license"]
    except KeyError as e:
        raise BpfError(errno.ENOEXEC, f"loading the XDP program: the object has no section {e}") from None
    _, sym_at, sym_size, strtab_index = sections[f"#{symtab_index}"]
    _, str_at, _, _ = sections[f"#{strtab_index}"]
    maps_index = next(int(k[1:]) for k, v in sections.items() if k.startswith("#") and v[1] == maps_at)

    def symbol(index: int) -> tuple[str, int, int]:
        st_name, _, _, st_shndx, st_value, _ = struct.unpack_from("<IBBHQQ", elf, sym_at + index * 24)
        end = elf.index(b"\0", str_at + st_name)
        return elf[str_at + st_name:end].decode(), st_shndx, st_value

    code = bytearray(elf[code_at:code_at + code_size])
    maps: dict[str, BpfMap] = {}
    program = XdpProgram(-1, maps)
    try:
        for offset in range(rel_at, rel_at + rel_size, 16):
            r_offset, r_info = struct.unpack_from("<QQ", elf, offset)
            name, shndx, value = symbol(r_info >> 32)
            if shndx != maps_index:
                raise BpfError(errno.ENOEXEC, f"loading the XDP program: a reference to {name} is not a map")
            if name not in maps:
                map_type, key_size, value_size, _, _ = struct.unpack_from("<IIIII", elf, maps_at + value)
                maps[name] = BpfMap(name, map_type, key_size, value_size, max_entries)
            if code[r_offset] != _LD_IMM64:
                raise BpfError(errno.ENOEXEC, f"loading the XDP program: the reference to {name} is not ld_imm64")
            code[r_offset + 1] = (code[r_offset + 1] & 0x0F) | (_PSEUDO_MAP_FD << 4)
            struct.pack_into("<i", code, r_offset + 4, maps[name].fd)
        insns = ctypes.create_string_buffer(bytes(code))
        licence = ctypes.create_string_buffer(elf[license_at:license_at + license_size].rstrip(b"\0") + b"\0")
        log = ctypes.create_string_buffer(1 << 20)
        attr = _attr("<IIQQIIQII16sII", _PROG_TYPE_XDP, len(code) // 8, ctypes.addressof(insns),
                     ctypes.addressof(licence), 0, 0, 0, 0, 0, b"turn_channels", 0, _ATTACH_XDP)
        try:
            program.fd = _bpf(_PROG_LOAD, attr, "loading the XDP program")
        except BpfError as e:
            if e.errno in (errno.EPERM, errno.EACCES):
                raise
            # ask again with the verifier's log, to say why
            attr = _attr("<IIQQIIQII16sII", _PROG_TYPE_XDP, len(code) // 8, ctypes.addressof(insns),
                         ctypes.addressof(licence), 1, len(log), ctypes.addressof(log), 0, 0, b"turn_channels", 0,
                         _ATTACH_XDP)
            try:
                program.fd = _bpf(_PROG_LOAD, attr, "loading the XDP program")
            except BpfError:
                tail = log.value.decode(errors="replace").strip().splitlines()[-20:]
                raise BpfError(e.errno, f"loading the XDP program: the verifier refused it: {' | '.join(tail)}") from None
        return program
    except BaseException:
        program.close()
        raise
