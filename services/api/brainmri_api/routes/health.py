"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from brainmri import DISCLAIMER, __version__
from brainmri.db.session import session_scope
from brainmri.jobs.queues import queue_depths
from brainmri.registry.versions import production_version_id
from brainmri_api.deps import StateDep

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
    checks: dict[str, str] = {}
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
    ready = all(value.startswith("ok") for value in checks.values())
    down = [name for name, value in checks.items() if not value.startswith("ok")]
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    if down:
        body["down"] = down
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (GET only; POST /metrics is evaluation)",
    response_class=Response,
)
def prometheus_metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
