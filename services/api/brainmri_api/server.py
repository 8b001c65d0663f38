"""``brainmri serve``: the API, plus (in embedded mode) its own worker in a child process."""

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

from brainmri import DISCLAIMER
from brainmri.cli.common import EPILOG
from brainmri.config import Settings, get_settings

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP API (embedded mode: with its own worker)",
        epilog=EPILOG,
        description="With no BRAINMRI_BROKER_URL set this is embedded mode: SQLite, a local "
        "object folder and a worker started alongside, all under BRAINMRI_DATA_DIR.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--no-worker", action="store_true", help="embedded mode without the bundled worker"
    )
    parser.set_defaults(handler=run)


def embedded_api_key(settings: Settings) -> str:
    """The generated admin key of embedded mode (created once, stored with mode 0600)."""
    path = settings.api_key_file
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    return key


def _die_with_parent() -> None:
    """Linux: the embedded worker gets SIGTERM if `serve` dies, even by SIGKILL (no orphans)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop_if_worker_dies(worker: subprocess.Popen[bytes]) -> None:
    """Embedded mode is one service: if its worker exits, stop the API too (no silent queue)."""

    def watch() -> None:
        code = worker.wait()
        if code not in (0, -signal.SIGTERM):
            log.error("embedded worker exited with status %s; stopping the API", code)
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="worker-watchdog", daemon=True).start()


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from brainmri.db.migrate import upgrade, wait_for_database

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker: subprocess.Popen[bytes] | None = None
    if settings.embedded:
        if not settings.api_keys:
            if settings.environment == "production":
                print(
                    "error: BRAINMRI_ENVIRONMENT=production needs BRAINMRI_API_KEYS; "
                    "keys are only generated in development",
                    file=sys.stderr,
                )
                return 2
            key = embedded_api_key(settings)
            os.environ["BRAINMRI_API_KEYS"] = f"{key}:admin"
            print(f"API key (admin, stored in {settings.api_key_file}): {key}", flush=True)
        os.environ.setdefault("BRAINMRI_WORKER_QUEUES", "predict,evaluate,train")
        get_settings.cache_clear()
        settings = get_settings()
        upgrade(settings.resolved_database_url)
        if not args.no_worker:
            command = [sys.executable, "-m", "brainmri.cli.main", "worker"]
            if settings.retrain_schedule:
                command.append("--beat")
            worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, env=os.environ.copy(), preexec_fn=_die_with_parent
            )
            _stop_if_worker_dies(worker)
        print(
            f"embedded mode: database {settings.resolved_database_url}, objects "
            f"{settings.resolved_object_store_url}, worker pid "
            f"{worker.pid if worker else 'none'}",
            flush=True,
        )
    else:
        wait_for_database(settings.resolved_database_url)
    print(
        f"brainmri API on http://{args.host}:{args.port} (docs at /docs). {DISCLAIMER}", flush=True
    )
    from brainmri_api.main import create_app

    try:
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_config=None,
            proxy_headers=True,
            access_log=False,  # brainmri_api.access logs every request with its id
            timeout_keep_alive=5,
        )
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0
