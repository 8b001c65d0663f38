"""``brainmri serve``: the API, plus (in embedded mode) its own workers in child processes.

Embedded mode runs two workers: one for predict and evaluate, one for train. A train job may
run for hours (limit 48 h) and a worker runs one job at a time, so with a single worker every
prediction would wait behind it; services mode has a separate trainer for the same reason.
Both write the same SQLite file, which is safe: the database is opened in WAL mode with a
30 s busy timeout (:mod:`brainmri.db.session`), and the API already writes it alongside.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from brainmri import DISCLAIMER
from brainmri.cli.common import EPILOG
from brainmri.config import Settings, get_settings
from brainmri.errors import ConfigurationError

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)


# The queues embedded mode consumes (BRAINMRI_WORKER_QUEUES may narrow them), and the one
# given a worker process of its own so that it never holds up the others.
EMBEDDED_QUEUES = "predict,evaluate,train"
OWN_WORKER_QUEUE = "train"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP API (embedded mode: with its own workers)",
        epilog=EPILOG,
        description="With no BRAINMRI_BROKER_URL set this is embedded mode: SQLite, a local "
        "object folder and two workers started alongside (predict/evaluate, and train), all "
        "under BRAINMRI_DATA_DIR.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $PORT, else 8000")
    parser.add_argument(
        "--no-worker", action="store_true", help="embedded mode without the bundled workers"
    )
    parser.set_defaults(handler=run)


def port_from_environment() -> int:
    """``$PORT`` (as platforms that assign ports set it), else 8000; empty counts as unset.

    Read when `serve` runs, not when the parser is built: a bad value used to crash every
    ``brainmri`` command with a traceback, ``--help`` included.
    """
    value = os.environ.get("PORT", "").strip()
    if not value:
        return 8000
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigurationError(f"PORT={value!r} is not a port number (1-65535)")
    return int(value)


def embedded_api_key(settings: Settings) -> tuple[str, str]:
    """The generated admin key of embedded mode (created once, stored with mode 0600), and the
    line that announces it.

    The key itself is printed only when it is created: stdout ends up in journald or
    ``docker logs``, and a key printed on every start would sit in every one of them.
    """
    path = settings.api_key_file
    if path.exists():
        return path.read_text().strip(), f"API key (admin): in {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    return key, f"API key (admin, new, stored in {path}; printed only this once): {key}"


def _die_with_parent() -> None:
    """Linux: each embedded worker gets SIGTERM if `serve` dies, even by SIGKILL (no orphans)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# Set once `serve` stops its workers: a worker killed then is no reason to interrupt the
# shutdown that is still stopping the other one.
_stopping = threading.Event()
# Set when a worker went away on its own; `serve` then stops and exits with status 1.
_worker_died = threading.Event()
# The running HTTP server, once there is one: the watchdog asks it to shut down.
_server: uvicorn.Server | None = None
# A signal sent to the whole process group (Ctrl-C, systemd) reaches `serve` and its workers
# together; a worker may exit first. Within this many seconds `serve` has noticed it too.
_GROUP_SIGNAL_GRACE_SECONDS = 1.0


def _stop_if_worker_dies(worker: subprocess.Popen[bytes], queues: str) -> None:
    """Embedded mode is one service: if a worker exits, stop the API too (no silent queue).

    Whatever the exit status: Celery's warm shutdown exits 0, so a worker stopped with a plain
    ``kill`` used to leave an API that accepted jobs nobody would ever run (and the job reaper
    runs in the workers, so nothing noticed). Only a stop that `serve` itself is making - its
    own shutdown, or a signal that reached it too - is not a failure.
    """

    def watch() -> None:
        code = worker.wait()
        time.sleep(_GROUP_SIGNAL_GRACE_SECONDS)
        server = _server
        if _stopping.is_set() or (server is not None and server.should_exit):
            return
        log.error("embedded worker (%s) exited with status %s; stopping the API", queues, code)
        print(
            f"error: the embedded worker for {queues} exited (status {code}); stopping",
            file=sys.stderr,
            flush=True,
        )
        _worker_died.set()
        if server is not None:
            server.should_exit = True
        else:  # still starting up: the SIGTERM handler ends `serve` through its cleanup
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name=f"worker-watchdog-{queues}", daemon=True).start()


def embedded_worker_queues(requested: str) -> list[str]:
    """Split the queues into worker groups: ``train`` alone, everything else together."""
    queues = [queue.strip() for queue in requested.split(",") if queue.strip()]
    rest = [queue for queue in queues if queue != OWN_WORKER_QUEUE]
    groups = [",".join(rest)] if rest else []
    return groups + ([OWN_WORKER_QUEUE] if OWN_WORKER_QUEUE in queues else [])


def _start_workers(settings: Settings, workers: dict[str, subprocess.Popen[bytes]]) -> None:
    """One worker process per queue group, each watched; beat runs in the train worker,
    the one that loads the trainer's tasks and with them the retrain schedule.

    Each goes into ``workers`` as soon as it exists, so a SIGTERM between two starts still
    finds the first one to stop."""
    groups = embedded_worker_queues(os.environ["BRAINMRI_WORKER_QUEUES"])
    beat_group = OWN_WORKER_QUEUE if OWN_WORKER_QUEUE in groups else next(iter(groups), None)
    for queues in groups:
        command = [sys.executable, "-m", "brainmri.cli.main", "worker", "--queues", queues]
        if settings.retrain_schedule and queues == beat_group:
            command.append("--beat")
        workers[queues] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, env=os.environ.copy(), preexec_fn=_die_with_parent
        )
        _stop_if_worker_dies(workers[queues], queues)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """End `serve` through its ``finally`` when SIGTERM arrives (docker stop, systemd, kill).

    uvicorn catches SIGTERM, shuts the server down, puts back the handler it found and sends
    the signal again. With the default handler that second delivery ended the process on the
    spot, so the ``finally`` that stops the workers never ran: on Linux they still went (via
    die-with-parent), on macOS they were left running. Raising SystemExit there unwinds it.
    """
    raise SystemExit(1 if _worker_died.is_set() else 128 + signum)


def _stop_workers(workers: dict[str, subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM all at once (a warm shutdown each), then kill whatever outlives ``timeout``."""
    if not workers:
        return
    _stopping.set()
    for worker in workers.values():
        worker.terminate()
    deadline = time.monotonic() + timeout
    for worker in workers.values():
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    print("embedded workers stopped", flush=True)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from brainmri.db.migrate import upgrade, wait_for_database

    port = args.port if args.port is not None else port_from_environment()
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    workers: dict[str, subprocess.Popen[bytes]] = {}
    # From here on a SIGTERM (or a worker's watchdog) ends `serve` through the `finally` that
    # stops the workers, even while they are still starting.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if settings.embedded:
            if not settings.api_keys:
                if settings.environment == "production":
                    print(
                        "error: BRAINMRI_ENVIRONMENT=production needs BRAINMRI_API_KEYS; "
                        "keys are only generated in development",
                        file=sys.stderr,
                    )
                    return 2
                key, announcement = embedded_api_key(settings)
                os.environ["BRAINMRI_API_KEYS"] = f"{key}:admin"
                print(announcement, flush=True)
            if not os.environ.get("BRAINMRI_WORKER_QUEUES"):  # empty counts as unset
                os.environ["BRAINMRI_WORKER_QUEUES"] = EMBEDDED_QUEUES
            get_settings.cache_clear()
            settings = get_settings()
            upgrade(settings.resolved_database_url)
            if not args.no_worker:
                _start_workers(settings, workers)
            described = ", ".join(f"{queues} pid {w.pid}" for queues, w in workers.items())
            print(
                f"embedded mode: database {settings.resolved_database_url}, objects "
                f"{settings.resolved_object_store_url}, workers: {described or 'none'}",
                flush=True,
            )
        else:
            wait_for_database(settings.resolved_database_url)
        print(
            f"brainmri API on http://{args.host}:{port} (docs at /docs). {DISCLAIMER}",
            flush=True,
        )
        from brainmri_api.main import create_app

        global _server
        _server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host=args.host,
                port=port,
                log_config=None,
                proxy_headers=True,
                access_log=False,  # brainmri_api.access logs every request with its id
                timeout_keep_alive=5,
            )
        )
        _server.run()
    finally:
        _stop_workers(workers)
    return 1 if _worker_died.is_set() else 0
