#!/opt/venv/bin/python
"""Container health check for every brainmri role: ``brainmri-healthcheck [URL]``.

Research/triage only - not a medical device.

One image runs the API, the workers, the trainer and beat (see the Dockerfile), so the check
looks at which brainmri service this container runs (``/proc/*/cmdline``, lowest pid wins):

* ``brainmri serve``: ``GET http://127.0.0.1:<--port>/healthz`` answers 200 (liveness only:
  readiness, ``/readyz``, is for load balancers, not for restarting a container).
* ``brainmri worker`` / ``trainer``: the process runs, and the database and the broker it works
  against answer within a few seconds. Celery's ``inspect ping`` is not used: it needs remote
  control, which the embedded broker switches off, and it is slow.
* ``brainmri beat``: the process runs and the broker answers.
* anything else (``brainmri db upgrade``, a shell): healthy; those are one-shot containers.

With a URL argument it only fetches that URL (docker-compose.yml states the API probe that way).
Exit status 0 is healthy, 1 unhealthy (Docker's convention); one line on stdout says why, and
``docker inspect`` shows it.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

LIVENESS_PATH = "/healthz"
TIMEOUT_S = 5.0
ROLES = ("serve", "worker", "trainer", "beat")


def service_argv(proc: Path = Path("/proc")) -> list[str] | None:
    """The argv of the brainmri service process in this container, if there is one."""
    found: list[tuple[int, list[str]]] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended while we looked
            continue
        argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        if role_of(argv):
            found.append((int(entry.name), argv))
    return min(found)[1] if found else None


def role_of(argv: list[str]) -> str | None:
    """``serve``/``worker``/``trainer``/``beat`` for a brainmri service command line."""
    for index, arg in enumerate(argv[:-1]):
        entry_point = os.path.basename(arg) == "brainmri"
        module = arg == "brainmri.cli.main" and index > 0 and argv[index - 1] == "-m"
        if (entry_point or module) and argv[index + 1] in ROLES:
            return argv[index + 1]
    return None


def api_url(argv: list[str]) -> str:
    port = os.environ.get("PORT", "8000")
    for index, arg in enumerate(argv):
        if arg == "--port" and index + 1 < len(argv):
            port = argv[index + 1]
        elif arg.startswith("--port="):
            port = arg.partition("=")[2]
    return f"http://127.0.0.1:{port}{LIVENESS_PATH}"


def check_url(url: str) -> str | None:
    """None when ``url`` answers 200, else what went wrong."""
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 - checked above
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    return None if status == 200 else f"{url}: HTTP {status}"


def check_dependencies(*, database: bool) -> str | None:
    """None when the broker (and the database) of this container's settings answer."""
    from brainmri.config import get_settings
    from brainmri.jobs.queues import queue_depths

    settings = get_settings()
    if database:
        from sqlalchemy import text

        from brainmri.db.session import get_engine

        try:
            with get_engine(settings.resolved_database_url).connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            return f"database unreachable: {type(exc).__name__}"
    try:
        queue_depths(settings)
    except Exception as exc:
        return f"broker unreachable: {type(exc).__name__}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        problem = check_url(argv[1])
        what = argv[1]
    else:
        service = service_argv()
        role = role_of(service) if service else None
        if role is None:
            print("healthy: no long-running brainmri service in this container")
            return 0
        what = f"brainmri {role}"
        if role == "serve":
            problem = check_url(api_url(service or []))
        else:
            problem = check_dependencies(database=role != "beat")
    if problem:
        print(f"unhealthy: {problem}")
        return 1
    print(f"healthy: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
