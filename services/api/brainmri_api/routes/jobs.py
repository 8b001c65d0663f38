"""``/v1/jobs``: submit, list, read, cancel jobs and fetch their artifacts."""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from brainmri.db.jobs import (
    check_active_job_limit,
    get_job,
    list_jobs,
    request_cancel,
    requeue_failed,
)
from brainmri.db.models import Job, JobKind, JobStatus
from brainmri.db.workers import live_workers_by_queue
from brainmri.errors import ConfigurationError, InputError
from brainmri.jobs.enqueue import send_job
from brainmri.jobs.names import QUEUE_FOR_KIND
from brainmri.sources import resolve_source
from brainmri.storage import ObjectNotFoundError
from brainmri.training.recipes import make_config, train_options
from brainmri_api.deps import AdminDep, PrincipalDep, SessionDep, StateDep
from brainmri_api.errors import ConflictError, NotFoundError, ServiceUnavailableError
from brainmri_api.ids import check_arch, check_job_id
from brainmri_api.schemas import (
    ErrorBody,
    EvaluateRequest,
    JobCreated,
    JobList,
    JobPublic,
    TrainRequest,
    job_links,
    job_public,
)
from brainmri_api.state import AppState
from brainmri_api.submission import (
    read_upload,
    refuse_when_at_limit,
    submit_job,
    validate_upload,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
# Typed as FastAPI's `responses` parameter is (dict is invariant in its key and value types).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}


@router.post(
    "/predict",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobCreated,
    responses=ERRORS,
    summary="Submit an image, DICOM file or zipped DICOM series",
)
def create_predict_job(
    state: StateDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="PNG/JPEG/TIFF/BMP, .dcm or a zip of a series")],
    tta: Annotated[bool, Form(description="Average the model's test-time views")] = False,
    cam: Annotated[bool, Form(description="Produce a Grad-CAM overlay")] = True,
    threshold: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
) -> JobCreated:
    """The upload is validated (type by content, full decode) and stored before the job is
    queued; a rejected upload leaves nothing behind."""
    refuse_when_at_limit(state, principal.key_id)
    upload = validate_upload(state, read_upload(file, state.settings.max_upload_bytes))
    job = submit_job(
        state,
        kind=JobKind.PREDICT,
        owner=principal.key_id,
        params={"tta": tta, "cam": cam, "threshold": threshold},
        upload=upload,
    )
    return JobCreated(job_id=job.id, status=job.status, links=job_links(job))


@router.post(
    "/evaluate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobCreated,
    responses=ERRORS,
    summary="Evaluate the production model on a labelled folder",
)
def create_evaluate_job(
    state: StateDep, principal: PrincipalDep, request: EvaluateRequest
) -> JobCreated:
    """A ``limit`` above ``BRAINMRI_MAX_EVAL_IMAGES`` is refused here, as the same 422 the
    schema's own bounds give (the schema cannot see this app's settings): accepted, the job
    would only fail later asking for a limit the user had already passed."""
    most = state.settings.max_eval_images
    if request.limit > most:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("body", "limit"),
                    "msg": f"Input should be at most {most} (BRAINMRI_MAX_EVAL_IMAGES, the "
                    "most images one evaluation may score)",
                    "input": request.limit,
                }
            ]
        )
    source = resolve_source(request.source, state.settings)
    params = {
        "source": source.uri,
        "tta": request.tta,
        "threshold": request.threshold,
        "limit": request.limit,
    }
    job = submit_job(state, kind=JobKind.EVALUATE, owner=principal.key_id, params=params)
    return JobCreated(job_id=job.id, status=job.status, links=job_links(job))


@router.post(
    "/train",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobCreated,
    responses=ERRORS,
    summary="Train a candidate model (admin)",
)
def create_train_job(state: StateDep, principal: AdminDep, request: TrainRequest) -> JobCreated:
    """Trains on the dataset's duplicate-aware split, evaluates the candidate against
    production on the same held-out images, registers it, and promotes it if the gate passes."""
    problem = state.settings.train_budget_problem(
        "time_budget_minutes", request.time_budget_minutes
    )
    if problem:
        raise InputError(problem, code="time_budget_too_long")
    check_arch(request.arch)
    params = request.model_dump()
    _check_train_options(request.recipe, params)
    source = resolve_source(request.dataset, state.settings)
    params["dataset"] = source.uri.rstrip("/") if source.uri.endswith(".csv/") else source.uri
    job = submit_job(state, kind=JobKind.TRAIN, owner=principal.key_id, params=params)
    return JobCreated(job_id=job.id, status=job.status, links=job_links(job))


def _check_train_options(recipe: str, params: dict[str, Any]) -> None:
    """Build the run's configuration now, so options that cannot go together (``crop`` head
    with ``head_crop_prob``) are a 422 at submission rather than a job that fails later."""
    try:
        make_config(recipe, **train_options(params))
    except ConfigurationError as exc:
        raise InputError(str(exc), code="invalid_train_options") from exc


# Both databases store OFFSET as a signed 64-bit integer; a larger one must be a 422, not a
# driver overflow. No one pages two billion rows deep.
MAX_LIST_OFFSET = 2**31 - 1


@router.get("", response_model=JobList, responses=ERRORS, summary="List your jobs")
def list_my_jobs(
    session: SessionDep,
    principal: PrincipalDep,
    kind: Annotated[JobKind | None, Query()] = None,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_LIST_OFFSET)] = 0,
) -> JobList:
    jobs, total = list_jobs(
        session, owner=principal.owner_filter, kind=kind, status=status_, limit=limit, offset=offset
    )
    return JobList(items=[job_public(job) for job in jobs], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobPublic, responses=ERRORS, summary="Read a job")
def read_job(
    job_id: str, state: StateDep, session: SessionDep, principal: PrincipalDep
) -> JobPublic:
    job = get_job(session, check_job_id(job_id), owner=principal.owner_filter)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job_public(job, waiting_reason=_waiting_reason(job, state, session))


def _waiting_reason(job: Job, state: AppState, session: Session) -> str | None:
    """Why a queued job may wait indefinitely: nothing consumes its queue. A user polling a
    job is told so, instead of watching ``queued`` without end."""
    if job.status != JobStatus.QUEUED:
        return None
    queue = QUEUE_FOR_KIND[job.kind]
    live = live_workers_by_queue(session, [queue], state.settings.worker_alive_within)
    if live[queue]:
        return None
    return f"no live worker consumes the {queue} queue; the job waits until one starts"


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=ERRORS,
    summary="Cancel a queued or running job",
)
def cancel_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> JobPublic:
    job = get_job(session, check_job_id(job_id), owner=principal.owner_filter)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    if JobStatus(job.status).finished:
        raise ConflictError(f"job {job_id} already {job.status}")
    job = request_cancel(session, job_id=job_id)
    assert job is not None
    return job_public(job)


@router.post(
    "/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=ERRORS,
    summary="Run a job again that failed with a retryable error (e.g. a storage outage)",
)
def retry_job(
    job_id: str, state: StateDep, session: SessionDep, principal: PrincipalDep
) -> JobPublic:
    job = get_job(session, check_job_id(job_id), owner=principal.owner_filter)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    if job.status == JobStatus.FAILED:  # it becomes active again: it needs a place
        check_active_job_limit(session, job.owner, state.settings.max_active_jobs_per_key)
    if not requeue_failed(session, job_id=job_id):
        raise ConflictError(
            f"job {job_id} is {job.status}; only failed jobs with a retryable error can be retried"
        )
    session.commit()
    try:
        send_job(state.celery, job_id=job_id, kind=job.kind)
    except Exception as exc:  # the reaper re-sends queued jobs once the broker is back
        raise ServiceUnavailableError(
            "the job is queued again but the broker is unavailable; "
            "it will be sent when the broker is back"
        ) from exc
    session.refresh(job)
    return job_public(job)


@router.get(
    "/{job_id}/artifacts/{name}",
    responses={
        200: {"content": {"image/png": {}, "text/csv": {}, "application/json": {}}},
        **ERRORS,
    },
    summary="Download a job artifact (CAM, plots, report, predictions)",
)
def read_artifact(
    job_id: str, name: str, state: StateDep, session: SessionDep, principal: PrincipalDep
) -> Response:
    job = get_job(session, check_job_id(job_id), owner=principal.owner_filter)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    uri = (job.artifacts or {}).get(name)
    if uri is None or PurePosixPath(name).name != name:
        raise NotFoundError(f"job {job_id} has no artifact {name!r}")
    try:
        data = state.store.get(state.store.key_from_uri(uri))
    except ObjectNotFoundError as exc:
        # Deleted, or recorded by a store this deployment no longer reaches: a clear 404 that
        # does not echo the server-side path of the recorded URI.
        raise NotFoundError(
            f"artifact {name!r} of job {job_id} is no longer in the object store",
            code="artifact_missing",
        ) from exc
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(
        data,
        media_type=media_type,
        headers={
            "Content-Disposition": f'inline; filename="{name}"',
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
        },
    )
