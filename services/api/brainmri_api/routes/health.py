"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from brainmri import DISCLAIMER, __version__
from brainmri.db.session import session_scope
from brainmri.db.workers import live_workers_by_queue
from brainmri.jobs.names import ALL_QUEUES
from brainmri.jobs.queues import queue_depths
from brainmri.registry.versions import production_version_id
from brainmri_api.deps import StateDep
from brainmri_api.state import AppState

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__, "disclaimer": DISCLAIMER}


@router.get(
    "/readyz",
    summary="Database, broker, object store and model are reachable",
    responses={503: {"description": "Names what is down"}},
)
def readyz(state: StateDep) -> JSONResponse:
    """Ready means this API can take jobs: its database, broker, store and model are there.

    Live workers per queue are reported beside the checks but do not decide readiness: a
    gateway whose workers are down can still accept and queue jobs, and taking it out of its
    load balancer would turn that queued work into refused connections. A queue with no live
    worker is named under ``warnings`` (and in ``brainmri_live_workers`` on ``/metrics``).
    """
    checks: dict[str, str] = {}
    workers: dict[str, int] | None = None
    try:
        with session_scope(state.database_url) as session:
            session.execute(text("SELECT 1"))
            version = production_version_id(session, state.settings.model_name)
        checks["database"] = "ok"
        checks["model"] = f"ok ({version})" if version else "down: no production model registered"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
        checks["model"] = "unknown: database down"
    try:
        queue_depths(state.settings)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"down: {type(exc).__name__}"
    try:
        state.store.check()
        checks["object_store"] = "ok"
    except Exception as exc:
        # The message names internal hosts and buckets: the log gets it, this open page not.
        log.warning("readiness: object store down: %s", exc)
        checks["object_store"] = f"down: {type(exc).__name__}"
    if checks["database"] == "ok":
        workers = _live_workers(state)
    ready = all(value.startswith("ok") for value in checks.values())
    down = [name for name, value in checks.items() if not value.startswith("ok")]
    body: dict[str, object] = {"status": "ready" if ready else "unavailable", "checks": checks}
    if down:
        body["down"] = down
    if workers is not None:
        body["workers"] = workers
        idle = [queue for queue, count in workers.items() if count == 0]
        if idle:
            body["warnings"] = [
                f"no live worker consumes the {queue} queue; its jobs wait" for queue in idle
            ]
    return JSONResponse(body, status_code=200 if ready else 503)


def _live_workers(state: AppState) -> dict[str, int] | None:
    """Live workers per queue; None when unknown (e.g. a database not yet migrated to the
    table), which is no reason to call the API unready."""
    try:
        with session_scope(state.database_url) as session:
            return live_workers_by_queue(session, ALL_QUEUES, state.settings.worker_alive_within)
    except Exception:
        log.warning("readiness: live workers unknown", exc_info=True)
        return None


@router.get(
    "/metrics",
    summary="Prometheus metrics (GET only; POST /metrics is evaluation)",
    response_class=Response,
)
def prometheus_metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
