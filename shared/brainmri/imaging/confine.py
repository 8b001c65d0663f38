"""Confine the calling process with Linux Landlock (no files outside one scratch folder, no
TCP) and a seccomp filter (no new socket of any kind).

Why: the decode sandbox's children parse files sent by strangers with large C libraries
(Pillow's codecs, pydicom's pixel handlers, zlib). Resource limits bound what a malformed file
can cost; they do nothing against a decoder exploit that runs code. Such code runs as the same
user as the API, so without this it could read the API's secrets (``/proc/<api pid>/environ``,
mounted secret files, an embedded SQLite database, the model) and send them anywhere over TCP.
After :func:`confine_process`, the child can still use every file descriptor it already holds (its
pipe to the API) and its scratch folder, and nothing else: no file is opened, executed or
created elsewhere, and - where the kernel's Landlock ABI is 4 or newer - no TCP connection is
made or port bound; from ABI 6 it also cannot signal processes outside its domain or reach
abstract Unix sockets.

Landlock (Linux 5.13+) needs no privileges: a process restricts itself and its future children,
irreversibly. Where the kernel lacks it (older kernels, macOS, a seccomp profile that filters
the syscalls) :func:`confine_process` reports what it could not do and the caller decides;
nothing here raises on a kernel that cannot confine.

Calls are made with ``ctypes`` through libc's ``syscall``: the three Landlock syscalls have the
same numbers on every Linux architecture (unified table, 444-446).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

#: Filesystem rights by the ABI version that introduced them (all handled, so all denied
#: unless a rule grants them).
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: 1 << 13, 3: 1 << 14, 5: 1 << 15}
_READ_FILE, _READ_DIR = 1 << 2, 1 << 3
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
#: Rights that make sense on a file rather than a folder (execute, write, read, truncate, ioctl).
_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


#: The guards a decode child can hold, as ``/metrics`` names them: files, tcp and signals are
#: Landlock's, sockets is :func:`deny_new_sockets`'s seccomp filter.
GUARDS: tuple[str, ...] = ("files", "tcp", "signals", "sockets")


@dataclass(frozen=True)
class Confinement:
    """What :func:`confine_process` achieved; ``abi`` 0: nothing was restricted (``reason``).
    ``sockets``: :func:`deny_new_sockets` holds too."""

    abi: int
    files: bool
    tcp: bool
    signals: bool
    reason: str = ""
    sockets: bool = False

    def held(self) -> tuple[str, ...]:
        """The :data:`GUARDS` that hold, in that order."""
        return tuple(guard for guard in GUARDS if getattr(self, guard))


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 where there is none."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(version), 0)


def confine_process(scratch: Path | None = None, readable: Sequence[Path] = ()) -> Confinement:
    """Restrict this process, irreversibly: any file access beneath ``scratch``, reading only
    beneath each of ``readable`` (code a lazy import may still need), nothing else; no TCP.

    Returns what was achieved; a kernel without Landlock yields ``Confinement(abi=0, ...)``.
    """
    abi = landlock_abi()
    if abi == 0:
        return Confinement(0, False, False, False, "this kernel has no Landlock")
    libc = ctypes.CDLL(None, use_errno=True)
    fs = 0
    for version, rights in _FS_RIGHTS_BY_ABI.items():
        if abi >= version:
            fs |= rights
    attr = _RulesetAttr(handled_access_fs=fs)
    size = 8  # the struct grew with the ABI; a kernel accepts the size it knows
    if abi >= 4:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
        size = 24
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        return Confinement(abi, False, False, False, _errno("landlock_create_ruleset"))
    try:
        rules = [(path, _READ_FILE | _READ_DIR) for path in readable]
        if scratch is not None:
            rules.append((scratch, fs))
        for path, rights in rules:
            problem = _allow(libc, ruleset, path, rights)
            if problem:
                return Confinement(abi, False, False, False, problem)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            return Confinement(abi, False, False, False, _errno("prctl(NO_NEW_PRIVS)"))
        if libc.syscall(_RESTRICT_SELF, ruleset, 0):
            return Confinement(abi, False, False, False, _errno("landlock_restrict_self"))
    finally:
        os.close(ruleset)
    return Confinement(abi, True, abi >= 4, abi >= 6)


def _allow(libc: ctypes.CDLL, ruleset: int, path: Path, rights: int) -> str:
    """Add one path-beneath rule; an error message, or "" when it was added."""
    try:
        folder = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open {path} for a Landlock rule: {exc.strerror}"
    try:
        if os.path.isfile(path):
            rights &= _FILE_RIGHTS  # a rule on a file may only hold rights that apply to files
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=folder)
        if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
            return _errno(f"landlock_add_rule({path})")
    finally:
        os.close(folder)
    return ""


def forget_environment() -> None:
    """Empty this process's environment, including the bytes it started with.

    A spawned child inherits its parent's environment - database URL, S3 and API keys. Emptying
    ``os.environ`` alone leaves the original strings in memory (at the top of the stack, where
    ``/proc/<pid>/environ`` reads them), so each is overwritten with zeros first.
    """
    import posix

    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None)
        libc.strlen.restype = ctypes.c_size_t
        libc.strlen.argtypes = [ctypes.c_void_p]
        table = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
        index = 0
        while table and table[index]:
            address = table[index]
            ctypes.memset(address, 0, libc.strlen(address))
            index += 1
    os.environ.clear()
    posix.environ.clear()


def _errno(call: str) -> str:
    number = ctypes.get_errno()
    return f"{call} failed: {os.strerror(number)} (errno {number})"


# --- seccomp: no new sockets ------------------------------------------------------------------
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
_EPERM = 1
_LD_ABS_W, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_IO_URING_SETUP = 425  # the same number on every architecture (unified table)
#: audit architecture, socket, socketpair and the first x32 number (x86-64 only) by machine.
_SOCKET_CALLS = {
    "x86_64": (0xC000003E, 41, 53, 0x40000000),
    "aarch64": (0xC00000B7, 198, 199, 0xFFFFFFFF),
}


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def deny_new_sockets() -> str:
    """Forbid this process, irreversibly, to create any socket (seccomp); "" when it holds,
    else why not.

    Why, beside Landlock: Landlock (up to ABI 7) restricts TCP only, so a decoder exploit
    could still send what it sees - the next uploads, DICOM headers with patient names before
    de-identification - out over UDP (a DNS query is enough) or a raw socket. A decode child
    needs no socket beyond the one it inherited from its parent, so ``socket``,
    ``socketpair`` and ``io_uring_setup`` (whose operations bypass seccomp) fail with EPERM,
    as does every system call made through another architecture's entry point (a 64-bit
    process can make 32-bit ones, with other numbers).
    """
    if not sys.platform.startswith("linux"):
        return "seccomp is Linux only"
    calls = _SOCKET_CALLS.get(os.uname().machine)
    if calls is None:
        return f"no socket filter for {os.uname().machine}"
    arch, socket_nr, socketpair_nr, x32_base = calls
    deny = _SECCOMP_RET_ERRNO | _EPERM
    program = [
        (_LD_ABS_W, 0, 0, 4),  # seccomp_data.arch
        (_JEQ_K, 0, 6, arch),  # another architecture's entry point: deny
        (_LD_ABS_W, 0, 0, 0),  # seccomp_data.nr
        (_JGE_K, 4, 0, x32_base),
        (_JEQ_K, 3, 0, socket_nr),
        (_JEQ_K, 2, 0, socketpair_nr),
        (_JEQ_K, 1, 0, _IO_URING_SETUP),
        (_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        (_RET_K, 0, 0, deny),
    ]
    filters = (_SockFilter * len(program))(*[_SockFilter(*op) for op in program])
    fprog = _SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        return _errno("prctl(NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0):
        return _errno("prctl(SECCOMP_MODE_FILTER)")
    return ""
