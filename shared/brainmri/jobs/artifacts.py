"""Where a job's artifacts live in the object store, and when they may be removed.

Each claim of a job writes under its own folder, ``artifacts/{job_id}/{attempt}/``. The claim's
attempt number is the fencing token of the job row (see :mod:`brainmri.db.jobs`), so it fences
the files too: a worker that was presumed dead and keeps running can neither overwrite the files
of the attempt that took over nor, when it finally fails, delete them. Downloads go through the
URIs recorded in the job's artifact map, so the layout is invisible to the API.

Removal is always best effort: the files are unreferenced by then, and an object-store outage
must not turn a finished job into a failed one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePosixPath

from brainmri.storage import ObjectStore, StorageUnavailableError

log = logging.getLogger(__name__)

#: Every job's artifact folder lies under this store prefix.
ARTIFACTS_ROOT = "artifacts/"
#: A submitted job's sanitized upload lies under this prefix, one folder per job.
UPLOADS_ROOT = "uploads/"
# Content types of the files jobs write; anything else is served as bytes.
CONTENT_TYPES = {".png": "image/png", ".json": "application/json", ".csv": "text/csv"}


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


def artifact_url(job_id: str, name: str) -> str:
    """Where the API serves a job's artifact: the one place that spells the route, for the
    workers' results and the API's job links alike."""
    return f"/v1/jobs/{job_id}/artifacts/{name}"


def artifact_prefix(job_id: str, attempt: int | None = None) -> str:
    """The folder of all of a job's artifacts, or of one attempt's (``attempt`` given)."""
    base = f"{ARTIFACTS_ROOT}{job_id}/"
    return base if attempt is None else f"{base}{attempt}/"


def upload_prefix(job_id: str) -> str:
    """The folder holding everything uploaded for ``job_id``."""
    return f"{UPLOADS_ROOT}{job_id}/"


def upload_key(job_id: str, extension: str) -> str:
    """Where the API stores a job's sanitized input: written before the job row exists, so a
    crash in between leaves a folder that :func:`brainmri.jobs.sweep.sweep_uploads` removes."""
    return f"{upload_prefix(job_id)}input{extension}"


def upload_owner(key: str) -> str | None:
    """The job id whose upload folder (see :func:`upload_key`) holds the stored object ``key``,
    or None for a key that is not inside one.

    Every key under the folder counts, odd ones (a marker, an empty segment) included: deleting
    the folder deletes them too, so their write times must count towards its age."""
    parts = key.split("/", 2)
    if len(parts) < 3 or f"{parts[0]}/" != UPLOADS_ROOT or not parts[1]:
        return None
    return parts[1]


def remove_artifacts(store: ObjectStore, job_id: str, attempt: int | None = None) -> None:
    """Delete the job's artifacts (one attempt's only, ``attempt`` given).

    Call it only once the job row says nothing can reference them any more: the attempt's
    failure or discarded result is committed, or the job ended for good without a result.
    """
    prefix = artifact_prefix(job_id, attempt)
    try:
        store.delete_prefix(prefix)
    except (StorageUnavailableError, OSError):
        log.warning("could not remove the artifacts under %s", prefix, exc_info=True)


def remove_other_attempts(store: ObjectStore, job_id: str, attempt: int) -> None:
    """Delete what earlier (crashed, superseded) attempts left; keep the winner's folder.

    Only for a job whose success by ``attempt`` is committed: a succeeded job is never claimed
    again, so no other attempt's files can ever be recorded.
    """
    job_prefix = artifact_prefix(job_id)
    keep = artifact_prefix(job_id, attempt)
    try:
        keys = [info.key for info in store.list(job_prefix) if not info.key.startswith(keep)]
        folders: set[str] = set()
        for key in keys:
            head, slash, _ = key[len(job_prefix) :].partition("/")
            if slash:  # another attempt's folder
                folders.add(f"{job_prefix}{head}/")
            else:  # a file of the layout before per-attempt folders
                store.delete(key)
        for folder in sorted(folders):
            store.delete_prefix(folder)
    except (StorageUnavailableError, OSError):
        log.warning("could not remove other attempts' artifacts of %s", job_id, exc_info=True)


def stored_attempts(store: ObjectStore) -> dict[str, set[int]]:
    """Every job with artifacts in the store, and the attempt folders it has there."""
    found: dict[str, set[int]] = defaultdict(set)
    for info in store.list(ARTIFACTS_ROOT):
        job_id, _, rest = info.key[len(ARTIFACTS_ROOT) :].partition("/")
        attempt, slash, _ = rest.partition("/")
        if slash and attempt.isdigit():
            found[job_id].add(int(attempt))
    return dict(found)


def remove_attempts(store: ObjectStore, job_id: str, attempts: Iterable[int]) -> None:
    """Delete the given attempt folders of one job (best effort, like every removal here)."""
    for attempt in sorted(attempts):
        remove_artifacts(store, job_id, attempt)
