"""Submitting jobs without leaving anything half-written.

Order: refuse early if the key is at its active-job limit -> validate and sanitize (in the
decode sandbox) -> store the sanitized upload under a generated key -> commit the job row
(checking the limit again under the owner's lock) -> enqueue.
If storing or committing fails, the object is removed; if enqueueing fails, both the row and
the object are removed and the client gets a 503. Enqueueing happens after the commit, so a
worker never receives an id whose row it cannot see yet.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import UploadFile

from brainmri.db.jobs import check_active_job_limit, create_job, delete_job
from brainmri.db.models import Job
from brainmri.db.session import session_scope
from brainmri.errors import EmptyInputError, InputTooLargeError
from brainmri.imaging.ingest import SanitizedUpload, sanitize_upload
from brainmri.jobs.artifacts import upload_key
from brainmri.jobs.enqueue import send_job
from brainmri_api.errors import ServiceUnavailableError
from brainmri_api.state import AppState

log = logging.getLogger(__name__)


def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` (+1 to detect overflow) from a spooled upload."""
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputTooLargeError(f"the upload exceeds {max_bytes} bytes", code="file_too_large")
    if not data:
        raise EmptyInputError("the uploaded file is empty")
    return data


def refuse_when_at_limit(state: AppState, owner: str) -> None:
    """429 before an upload is read and decoded, when the key has no place left anyway.

    A cheap early answer that spares the decode sandbox; :func:`submit_job` checks again
    under the owner's lock, which is what makes the limit exact.
    """
    with session_scope(state.database_url) as session:
        check_active_job_limit(session, owner, state.settings.max_active_jobs_per_key, lock=False)


def validate_upload(state: AppState, data: bytes) -> SanitizedUpload:
    """Type by content, full decode, de-identification - in the decode sandbox.

    413/415/422 happen here, before anything is stored; only the sanitized bytes (DICOM
    de-identified, raster images without metadata) ever reach the object store.
    """
    return state.sandbox.run(sanitize_upload, data, state.limits, state.dicom_selection)


def submit_job(
    state: AppState,
    *,
    kind: str,
    owner: str,
    params: dict[str, Any],
    upload: SanitizedUpload | None = None,
) -> Job:
    job_id = str(uuid.uuid4())
    key = upload_key(job_id, upload.extension) if upload else None
    input_uri = None
    try:
        if upload is not None and key is not None:
            input_uri = state.store.put(key, upload.data)
        with session_scope(state.database_url) as session:
            job = create_job(
                session,
                job_id=job_id,
                kind=kind,
                owner=owner,
                params=params,
                input_uri=input_uri,
                max_active=state.settings.max_active_jobs_per_key,
            )
    except BaseException:
        if key is not None and input_uri is not None:
            _remove_quietly(state, key)
        raise
    try:
        send_job(state.celery, job_id=job_id, kind=kind)
    except Exception as exc:
        log.error("broker unavailable, rolling back job %s: %s", job_id, exc)
        with session_scope(state.database_url) as session:
            delete_job(session, job_id)
        if key is not None:
            _remove_quietly(state, key)
        raise ServiceUnavailableError(
            "the job queue is unavailable; nothing was stored, try again shortly"
        ) from exc
    return job


def _remove_quietly(state: AppState, key: str) -> None:
    try:
        state.store.delete(key)
    except Exception:
        log.exception("could not remove %s after a failed submission", key)
