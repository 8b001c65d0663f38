"""Untrusted decoding in child processes, with a time limit and a memory cap.

Decoders are large C libraries fed by strangers. Running them in a few child processes
means a pathological file can cost at most ``timeout`` seconds and ``memory_mb`` of address
space, and a crash or hang takes down a disposable child - never the API process.

Why one child per running decode rather than a ``multiprocessing.Pool``: a pool's only cure for
a hung task is ``terminate()``, which also kills every other caller's decode, and its
``get(timeout)`` starts counting while the task still waits in the pool's queue. Here each of the
``processes`` slots owns one warm child, so

* a caller waits for a free slot first (the slots are the concurrency bound) and only then
  starts the clock: ``timeout`` is the decode's own run time, never time spent queueing behind
  other uploads or waiting for a replacement child to import its decoders;
* a timeout kills exactly the child that ran the hung decode and starts a replacement in its
  slot; other callers' decodes run on untouched.

Waiting for a slot has no separate limit: each slot frees within ``timeout`` (plus a child
start), so the wait is bounded by queue depth, and the HTTP front end already bounds the
request. A 422 for a decode that never started would blame the upload for the server's load.

With ``confine`` (the default), each child also confines itself before it takes any work
(:mod:`brainmri.imaging.confine`): it forgets its environment (the API's database URL and
keys), may read nothing but Python's and brainmri's own code and write only in a scratch
folder of its own, removed with the child (Landlock), and can create no socket of any kind
(seccomp). Time and memory limits bound what a malformed file costs; confinement bounds what a
decoder exploit could reach.
What a child sends back is data in :mod:`brainmri.imaging.wire`'s format, never a pickle, so a
compromised child cannot run code in its parent either; a reply that is not well formed costs
that child its life and the caller a 422 (``decode_crashed``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from brainmri.errors import InputError, InputTooLargeError, UndecodableImageError
from brainmri.imaging import wire
from brainmri.imaging.confine import (
    Confinement,
    confine_process,
    deny_new_sockets,
    forget_environment,
)

if TYPE_CHECKING:
    from brainmri.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

TASKS_PER_CHILD = 1000  # recycle a child now and then: C decoders may leak or fragment memory
START_TIMEOUT = 120.0  # importing the decoders is slow on a busy machine, but must not hang
_READY = "ready"


def _limit_memory(memory_mb: int) -> None:
    """Cap the child's address space, then warm its decoders.

    macOS refuses an ``RLIMIT_AS`` lower than what the process already maps (Apple-silicon
    worker hosts are a target): the child then decodes uncapped and says so on stderr, rather
    than dying at start and failing every job.
    """
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError) as exc:
            print(f"brainmri decode child: no memory cap ({exc})", file=sys.stderr)
    import brainmri.imaging.ingest  # noqa: F401 - warm the decoders once per child


def code_folders() -> list[Path]:
    """What a confined child may still read: the Python installation (standard library and
    site-packages, for imports a decoder makes lazily) and the brainmri package itself."""
    import brainmri

    paths = sysconfig.get_paths()
    folders = {Path(paths[name]) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    folders.add(Path(brainmri.__file__).parent)
    return sorted(folder for folder in folders if folder.is_dir())


SCRATCH_PREFIX = "brainmri-decode-"


def _confine_child() -> tuple[str, Confinement]:
    """A scratch folder of the child's own for decoders' temporary files (unzipped series),
    no environment, then the Landlock rules; the folder's path goes back to the parent, which
    removes it when the child stops. Its name carries the child's pid, so a folder whose
    parent was killed before it could remove it is found later (:func:`sweep_stale_scratch`)."""
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
    tempfile.tempdir = scratch
    forget_environment()
    state = confine_process(Path(scratch), readable=code_folders())
    problem = deny_new_sockets()
    if problem:
        reason = "; ".join(filter(None, [state.reason, f"sockets: {problem}"]))
        return scratch, dataclasses.replace(state, reason=reason)
    return scratch, dataclasses.replace(state, sockets=True)


def _process_gone(pid: int) -> bool:
    """No such process, or only its zombie (an orphan's waits for whatever reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another user's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False  # no /proc (macOS): it answered, so it runs
    return state in ("Z", "X")


def sweep_stale_scratch(folder: Path | None = None) -> list[Path]:
    """Remove scratch folders of decode children that no longer run; the removed ones.

    Why: a parent killed mid-decode (the OOM killer, a hard time limit, SIGKILL) cannot remove
    its children's scratch folders, and an API's may hold a half-unzipped DICOM series from
    before de-identification. A folder whose pid still runs (or is another user's) is left
    alone; only folders in this process's temporary directory are looked at, so processes of
    another container (another pid namespace) are never confused with dead ones unless they
    share its ``/tmp``.
    """
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid_text = path.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or not path.is_dir():
            continue
        if not _process_gone(int(pid_text)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _exit_with_parent(poll_seconds: float = 1.0) -> None:
    """End this child soon after its parent is gone, even in the middle of a decode.

    A parent that exits normally closes the pipe and an idle child ends on EOF; but a parent
    killed while its child is stuck in a hung decode (a Celery hard time limit, the OOM
    killer) would leave that child spinning forever, since nobody kills it any more. When the
    parent dies the child is re-parented, so a changed ``getppid()`` is the signal.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def serve_child() -> None:
    """A decode child's entry point: ``python -c ... serve_child()`` with the socket's file
    descriptor, the memory cap in MB and 1/0 for confinement as arguments."""
    fd, memory_mb, confine = sys.argv[1:4]
    _serve(Connection(int(fd)), int(memory_mb), confine == "1")


def _serve(conn: Connection, memory_mb: int, confine: bool) -> None:
    """Child main loop: one ``(fn, args)`` at a time, each answered ``(ok, value)``.

    Ctrl-C goes to the whole process group; the parent decides when children stop, so the
    child ignores it instead of printing a traceback mid-decode. The parent's ``sys.path``
    comes first, so the child imports what the parent's functions name. The ready message
    carries the child's scratch folder and what confinement achieved (``None`` for either
    when unconfined).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    sys.path[:] = conn.recv()
    _limit_memory(memory_mb)
    scratch, confinement = _confine_child() if confine else (None, None)
    conn.send_bytes(wire.dumps((_READY, scratch, confinement)))
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return  # the parent closed its end: sandbox closed or parent gone
        try:
            reply: tuple[bool, Any] = (True, fn(*args))
        except Exception as exc:  # every failure, MemoryError included, belongs to the caller
            reply = (False, exc)
        try:
            frame = wire.dumps(reply)
        except wire.WireError as exc:  # a result of a type replies do not carry
            frame = wire.dumps((False, RuntimeError(f"decode result could not be sent: {exc}")))
        try:
            conn.send_bytes(frame)
        except OSError:
            return


class _Child:
    """One warm decode process and the socket to it; used by one caller at a time.

    Started with ``subprocess`` rather than ``multiprocessing``: Celery's prefork pool runs
    jobs in daemonic billiard processes, from which ``multiprocessing`` refuses to start
    children (and cannot pickle billiard's process key). A fresh interpreter with one
    inherited socket needs neither.
    """

    def __init__(self, memory_mb: int, generation: int, confine: bool) -> None:
        ours, theirs = socket.socketpair()
        import brainmri

        package_root = str(Path(brainmri.__file__).parent.parent)
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed code
                [
                    sys.executable,
                    "-c",
                    f"import sys; sys.path.insert(0, {package_root!r}); "
                    "from brainmri.imaging.sandbox import serve_child; serve_child()",
                    str(theirs.fileno()),
                    str(memory_mb),
                    "1" if confine else "0",
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send(list(sys.path))
        self.generation = generation
        self.ready = False
        self.tasks = 0
        self.scratch: str | None = None
        self.confinement: Confinement | None = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_code(self, wait: float = 5.0) -> int | None:
        """The child's exit status once it has ended (after at most ``wait`` seconds)."""
        try:
            return self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None

    def wait_ready(self) -> None:
        """Block until the child has imported its decoders; that start-up is not decode time."""
        if self.ready:
            return
        try:
            if not self.conn.poll(START_TIMEOUT):
                raise RuntimeError(f"decode child did not start within {START_TIMEOUT:.0f} s")
            message = wire.loads(self.conn.recv_bytes())
        except EOFError as exc:
            raise RuntimeError(
                f"decode child died while starting (exit code {self.exit_code()})"
            ) from exc
        match message:
            case (str() as tag, str() | None as scratch, Confinement() | None as confinement):
                if tag != _READY:
                    raise RuntimeError(f"decode child sent {tag!r} instead of {_READY!r}")
                self.scratch, self.confinement = scratch, confinement
            case _:
                raise RuntimeError("decode child sent a malformed ready message")
        self.ready = True

    def reply(self, max_bytes: int | None) -> tuple[bool, Any]:
        """The child's answer as ``(ok, value)``; a frame that is not one is the child's fault
        (a decoder exploit speaking for it): :class:`wire.WireError`."""
        try:
            frame = self.conn.recv_bytes(max_bytes)
        except OSError as exc:  # longer than max_bytes
            raise wire.WireError(f"reply refused: {exc}") from exc
        match wire.loads(frame):
            case (bool() as ok, value):
                return ok, value
            case _:
                raise wire.WireError("a reply is an (ok, value) pair")

    def stop(self) -> None:
        self.process.kill()
        self.exit_code(wait=10)  # reaped: no zombie left behind
        self.conn.close()
        if self.scratch is not None:  # whatever a killed decode left half-written
            shutil.rmtree(self.scratch, ignore_errors=True)


class DecodeSandbox:
    """Runs ``fn(*args)`` in one of ``processes`` warm children, killing only hung ones."""

    def __init__(
        self,
        *,
        processes: int = 2,
        timeout: float = 30.0,
        memory_mb: int = 2048,
        confine: bool = True,
        tasks_per_child: int = TASKS_PER_CHILD,
    ) -> None:
        self.processes = processes
        self.tasks_per_child = tasks_per_child
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.confine = confine
        #: What the latest started child reported of its confinement (None: none started, or
        #: ``confine`` is off).
        self.confinement: Confinement | None = None
        self._lock = threading.Lock()
        self._generation = 0  # bumped by close(): children of older generations are retired
        self._swept = False  # stale scratch folders are swept before the first child starts
        # The slot queue is the semaphore: taking a slot is what lets a caller start a decode.
        # A slot holds its warm child, or None until one is started.
        self._slots: queue.Queue[_Child | None] = queue.Queue()
        for _ in range(processes):
            self._slots.put(None)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a child; input errors propagate, a timeout becomes 422."""
        request = ForkingPickler.dumps((fn, args))  # before taking a slot: may be large, or fail
        child = self._slots.get()  # waits for a free slot; no clock runs yet
        in_step = False  # becomes True once a whole request/reply exchange has completed
        try:
            child = self._started(child)
            child.wait_ready()
            self._note(child)
            child.conn.send_bytes(request)
            child.tasks += 1
            if not child.conn.poll(self.timeout):  # the clock: this decode's own run time
                log.warning("decode took longer than %.0fs; its child was killed", self.timeout)
                raise InputError(
                    f"decoding took longer than {self.timeout:.0f} s and was stopped",
                    code="decode_timeout",
                )
            try:
                ok, value = child.reply(self.memory_mb * 1024**2 if self.memory_mb > 0 else None)
            except EOFError as exc:
                log.warning("decode child died (exit code %s)", child.exit_code())
                raise UndecodableImageError(
                    "the decoder crashed on this input", code="decode_crashed"
                ) from exc
            except wire.WireError as exc:
                log.warning("decode child sent a malformed reply, killed: %s", exc)
                raise UndecodableImageError(
                    "the decoder sent back a malformed reply", code="decode_crashed"
                ) from exc
            in_step = True
        finally:
            self._slots.put(self._hand_back(child, in_step))
        if ok:
            return value
        if isinstance(value, MemoryError):
            raise InputTooLargeError(
                "decoding needed more memory than allowed", code="decode_memory_limit"
            ) from value
        raise value

    def _note(self, child: _Child) -> None:
        """Keep, and log when it changes, what a child reported of its confinement."""
        state = child.confinement
        if state is None or state == self.confinement:
            return
        self.confinement = state
        if state.files:
            log.info(
                "decode children confined (Landlock ABI %d): files%s%s%s",
                state.abi,
                ", TCP" if state.tcp else "",
                ", signals" if state.signals else "",
                ", no new sockets" if state.sockets else "",
            )
        if not (state.files and state.sockets):
            log.warning("decode children run partly or wholly unconfined: %s", state.reason)

    def _started(self, child: _Child | None) -> _Child:
        if child is not None and child.alive():
            return child
        if child is not None:  # died while idle (OOM killer, an operator): replace it
            child.stop()
        return self._spawn()

    def _spawn(self) -> _Child:
        with self._lock:
            generation = self._generation
            swept, self._swept = self._swept, True
        if not swept and self.confine:
            for path in sweep_stale_scratch():
                log.warning("removed the scratch folder of a dead decode child: %s", path)
        return _Child(self.memory_mb, generation, self.confine)

    def _hand_back(self, child: _Child | None, in_step: bool) -> _Child | None:
        """What goes back into the slot: the same child, a fresh one, or None.

        A child whose pipe is out of step (timeout, crash, an interrupted exchange) is killed;
        only it - other slots are never touched. Its replacement is started right away, so it
        imports its decoders while the slot is idle rather than while a caller waits.
        """
        if child is None:
            return None
        with self._lock:
            current = child.generation == self._generation
        if in_step and current and child.tasks < self.tasks_per_child:
            return child
        child.stop()
        if not current:
            return None  # closed meanwhile: started again only if used again
        try:
            return self._spawn()
        except OSError:
            log.exception("could not start a replacement decode child; will retry on next use")
            return None

    def warm_up(self) -> None:
        """Start every idle slot's child now and wait until each is ready, so the first
        uploads do not pay for it and :attr:`confinement` (logged, and on the API's
        ``/metrics``) is known from start-up. A child that fails to start leaves its slot
        empty; the first decode there tries again and reports why."""
        taken = self._take_idle()
        try:
            for i, child in enumerate(taken):
                started = self._started(child)
                taken[i] = started
                try:
                    started.wait_ready()
                except RuntimeError:
                    log.exception("a decode child failed to start")
                    started.stop()
                    taken[i] = None
                    continue
                self._note(started)
        finally:
            for child in taken:
                self._slots.put(child)

    def close(self) -> None:
        """Stop idle children now; busy ones are stopped when their decode ends."""
        with self._lock:
            self._generation += 1
        taken = self._take_idle()
        for child in taken:
            if child is not None:
                child.stop()
        for _ in taken:
            self._slots.put(None)

    def _take_idle(self) -> list[_Child | None]:
        taken: list[_Child | None] = []
        while True:
            try:
                taken.append(self._slots.get_nowait())
            except queue.Empty:
                return taken


def sandbox_options(settings: Settings, *, processes: int) -> dict[str, Any]:
    """:class:`DecodeSandbox`'s arguments under the configured time, memory, confinement and
    recycling rules (``BRAINMRI_UPLOAD_DECODE_TIMEOUT_SECONDS``, ``..._SANDBOX_MEMORY_MB``,
    ``..._CONFINE``, ``BRAINMRI_DECODE_CHILD_MAX_TASKS``): the API's upload sandbox and the
    workers' job sandbox hold decoders to the same rules."""
    return {
        "processes": processes,
        "timeout": settings.upload_decode_timeout_seconds,
        "memory_mb": settings.upload_sandbox_memory_mb,
        "confine": settings.upload_sandbox_confine,
        "tasks_per_child": settings.decode_child_max_tasks,
    }


def sandbox_from_settings(settings: Settings, *, processes: int) -> DecodeSandbox:
    """A sandbox of ``processes`` children under the configured rules (see sandbox_options)."""
    return DecodeSandbox(**sandbox_options(settings, processes=processes))


def run_decoder(sandbox: DecodeSandbox | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in ``sandbox`` when there is one, else here: one call site for code that
    decodes both untrusted job inputs (with a sandbox) and a user's own files (without)."""
    if sandbox is None:
        return fn(*args)
    return sandbox.run(fn, *args)
