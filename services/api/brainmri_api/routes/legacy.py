"""The original service's endpoints, kept for existing clients.

``POST /predict`` and ``POST /metrics`` now enqueue a job, wait up to
``BRAINMRI_LEGACY_WAIT_SECONDS`` for it, and answer with the original field names plus
``job_id``. If the job is not done in time they answer ``202`` with the job's links instead.
Differences from the original, on purpose: an API key is required; paths must lie under
``BRAINMRI_ALLOWED_ROOTS``; a request ``threshold`` beats ``TUMOR_THRESH``; a failed image no
longer shifts later predictions; ``img_limit`` samples evenly across classes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from brainmri import DISCLAIMER
from brainmri.db.models import Job, JobKind, JobStatus, Prediction
from brainmri.db.session import session_scope
from brainmri.sources import resolve_source
from brainmri_api.deps import PrincipalDep, StateDep
from brainmri_api.errors import error_response
from brainmri_api.job_errors import status_for_code
from brainmri_api.routes.jobs import ERRORS
from brainmri_api.schemas import (
    JobCreated,
    LegacyMetricsRequest,
    LegacyMetricsResponse,
    LegacyPredictResponse,
    LegacySample,
    job_links,
)
from brainmri_api.state import AppState
from brainmri_api.submission import (
    read_upload,
    refuse_when_at_limit,
    submit_job,
    validate_upload,
)

router = APIRouter(tags=["legacy"])


async def wait_for(state: AppState, job_id: str) -> Job | None:
    """The finished job, or None after ``legacy_wait_seconds``."""
    deadline = time.monotonic() + state.settings.legacy_wait_seconds
    delay = 0.02
    while True:
        job = await run_in_threadpool(_load, state, job_id)
        if job is not None and JobStatus(job.status).finished:
            return job
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _load(state: AppState, job_id: str) -> Job | None:
    with session_scope(state.database_url) as session:
        job = session.get(Job, job_id)
        if job is not None:
            session.expunge(job)
        return job


def _pending(job: Job) -> JSONResponse:
    body = JobCreated(job_id=job.id, status=job.status, links=job_links(job))
    return JSONResponse(body.model_dump(), status_code=202)


def _failed(job: Job) -> JSONResponse:
    """The error answer for a job that did not succeed, with the status its error code has
    everywhere else in the API (a worker's limits may refuse what the API let through)."""
    error = job.error or {}
    code = error.get("code", "job_failed")
    status = 409 if job.status == JobStatus.CANCELLED else status_for_code(code)
    response = error_response(status, code, error.get("message", f"job {job.status}"))
    response.headers["X-Job-Id"] = job.id
    return response


@router.post(
    "/predict",
    response_model=LegacyPredictResponse,
    responses={202: {"model": JobCreated}, **ERRORS},
    summary="Original endpoint: classify one upload and wait for the answer",
)
async def legacy_predict(
    state: StateDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File()],
    save_cam: Annotated[bool, Query(description="Produce a Grad-CAM overlay (cam_url)")] = False,
    tta: Annotated[bool, Query()] = False,
) -> LegacyPredictResponse | JSONResponse:
    await run_in_threadpool(refuse_when_at_limit, state, principal.key_id)
    data = await run_in_threadpool(read_upload, file, state.settings.max_upload_bytes)
    upload = await run_in_threadpool(validate_upload, state, data)
    job = await run_in_threadpool(
        lambda: submit_job(
            state,
            kind=JobKind.PREDICT,
            owner=principal.key_id,
            params={"tta": tta, "cam": save_cam, "threshold": None},
            upload=upload,
        )
    )
    finished = await wait_for(state, job.id)
    if finished is None:
        return _pending(job)
    if finished.status != JobStatus.SUCCEEDED:
        return _failed(finished)
    result = finished.result or {}
    return LegacyPredictResponse(
        has_tumor=result["has_tumor"],
        tumor_probability=round(result["tumor_prob"], 4),
        classification=result["predicted_class"],
        notes=f"{DISCLAIMER} Threshold {result['threshold']:.2f}.",
        job_id=finished.id,
        class_probs=result["class_probs"],
        threshold=result["threshold"],
        model_version=finished.model_version,
        cam_url=result.get("cam_url"),
    )


@router.post(
    "/metrics",
    response_model=LegacyMetricsResponse,
    responses={202: {"model": JobCreated}, **ERRORS},
    summary="Original endpoint: evaluate a folder or listed files and wait",
)
async def legacy_metrics(
    state: StateDep, principal: PrincipalDep, request: LegacyMetricsRequest
) -> LegacyMetricsResponse | JSONResponse:
    if not request.root and not request.paths:
        return error_response(400, "invalid_request", "give a 'root' folder or a list of 'paths'")
    paths = [resolve_source(path, state.settings).uri for path in request.paths or []]
    root = resolve_source(request.root, state.settings).uri if request.root else None
    params = {
        "source": root,
        "paths": paths,
        "recursive": request.recursive,
        "limit": request.img_limit,
        "threshold": request.threshold,
        "tta": request.tta,
    }
    job = await run_in_threadpool(
        lambda: submit_job(state, kind=JobKind.EVALUATE, owner=principal.key_id, params=params)
    )
    finished = await wait_for(state, job.id)
    if finished is None:
        return _pending(job)
    if finished.status != JobStatus.SUCCEEDED:
        return _failed(finished)
    result = finished.result or {}
    samples = []
    if request.return_predictions and request.max_predictions:
        samples = await run_in_threadpool(_samples, state, job.id, request.max_predictions)
    labelled = result.get("n_labeled", 0)
    return LegacyMetricsResponse(
        n_total=result.get("n_total", 0),
        n_scored=result.get("n_scored", 0),
        n_labeled=labelled,
        acc_multiclass=result.get("acc_multiclass"),
        acc_binary=result.get("acc_binary") if labelled else None,
        cm_multiclass=result.get("cm_multiclass") or [],
        cm_binary=result.get("cm_binary") or [],
        suggested_threshold_by_YoudenJ=result.get("best_threshold_by_YoudenJ"),
        best_J=result.get("best_J"),
        notes=f"{DISCLAIMER} Threshold {result.get('threshold', 0):.2f}; "
        f"{result.get('n_failed', 0)} file(s) could not be read.",
        samples=samples,
        job_id=finished.id,
        threshold=result.get("threshold", 0.0),
        model_version=finished.model_version,
    )


def _samples(state: AppState, job_id: str, limit: int) -> list[LegacySample]:
    with session_scope(state.database_url) as session:
        rows = session.scalars(
            select(Prediction)
            .where(Prediction.job_id == job_id)
            .order_by(Prediction.item_index)
            .limit(limit)
        ).all()
        return [
            LegacySample(
                path=row.input_uri,
                pred_class=row.predicted_class,
                tumor_prob=round(row.tumor_prob, 4),
                true_class=row.true_class,
            )
            for row in rows
        ]
