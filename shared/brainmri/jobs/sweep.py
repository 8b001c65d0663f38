"""Sweeps for stored files that nothing references any more: the safety net of "no orphans".

Every path that ends a job or fails an upload removes its own files, but only best effort: an
object store that is down at that moment, or a process killed between writing a file and
recording it, leaves files behind. A worker's reaper thread runs these sweeps every
``BRAINMRI_ARTIFACT_SWEEP_INTERVAL_SECONDS``; they are idempotent, so several workers doing
the same sweep is harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from brainmri.config import Settings
from brainmri.db.jobs import artifact_owners, existing_job_ids
from brainmri.db.models import JobStatus
from brainmri.db.session import session_scope
from brainmri.jobs.artifacts import (
    UPLOADS_ROOT,
    remove_attempts,
    stored_attempts,
    upload_owner,
    upload_prefix,
)
from brainmri.registry.versions import MODELS_PREFIX, bundle_prefix_of, registered_prefixes
from brainmri.storage import ObjectStore, open_store

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """Attempt folders removed by one sweep, by job id."""

    removed: dict[str, list[int]] = field(default_factory=dict)


def sweep_artifacts(settings: Settings) -> SweepResult:
    """Remove artifact folders that no job can reference any more, judged by the job row,
    read *after* the listing:

    * no row (the job was deleted): every folder;
    * failed or cancelled: every folder listed. A retry may start meanwhile, but under a new
      attempt number, above the row's ``attempts`` that was read, so its folder is kept;
    * succeeded: every folder but the winning attempt's (the row's last attempt);
    * queued or running: none; an attempt may still be writing.
    """
    store = open_store(settings)
    listed = stored_attempts(store)
    if not listed:
        return SweepResult()
    with session_scope(settings.resolved_database_url) as session:
        owners = artifact_owners(session, list(listed))
    result = SweepResult()
    for job_id, attempts in listed.items():
        owner = owners.get(job_id)
        if owner is None:
            garbage = attempts
        elif owner.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            garbage = {attempt for attempt in attempts if attempt <= owner.attempts}
        elif owner.status == JobStatus.SUCCEEDED:
            garbage = attempts - {owner.attempts}
        else:
            continue
        if garbage:
            remove_attempts(store, job_id, garbage)
            result.removed[job_id] = sorted(garbage)
    if result.removed:
        log.warning(
            "artifact sweep removed %d unreferenced attempt folder(s) of %d job(s)",
            sum(len(folders) for folders in result.removed.values()),
            len(result.removed),
        )
    return result


def sweep_bundles(settings: Settings, grace_seconds: float) -> list[str]:
    """Remove model bundle folders with no registry row; the folders removed.

    A bundle is uploaded first and recorded after, in one transaction, so a folder without a
    row is either an upload in progress or one whose trainer was killed mid-way. Only a folder
    whose newest file is older than ``grace_seconds`` is removed: no upload takes that long.
    """
    store = open_store(settings)
    newest = _newest_write_by(store, f"{MODELS_PREFIX}/", bundle_prefix_of)
    if not newest:
        return []
    with session_scope(settings.resolved_database_url) as session:
        orphans = set(newest) - registered_prefixes(session)
    removed = _settled(orphans, newest, grace_seconds)
    for folder in removed:
        store.delete_prefix(folder)
    if removed:
        log.warning("bundle sweep removed unregistered bundle folders: %s", removed)
    return removed


def sweep_uploads(settings: Settings, grace_seconds: float) -> list[str]:
    """Remove upload folders of jobs that do not exist; the folders removed.

    The API stores an upload before it inserts the job row, and removes the upload itself when
    the insert or the broker fails; a process killed in between leaves the upload behind. As
    for bundles, a folder is removed only once its newest file is older than ``grace_seconds``,
    so an upload whose row is being inserted right now is left alone.
    """
    store = open_store(settings)
    newest = _newest_write_by(store, UPLOADS_ROOT, upload_owner)
    if not newest:
        return []
    with session_scope(settings.resolved_database_url) as session:
        orphans = set(newest) - existing_job_ids(session, list(newest))
    removed = [upload_prefix(job_id) for job_id in _settled(orphans, newest, grace_seconds)]
    for folder in removed:
        store.delete_prefix(folder)
    if removed:
        log.warning(
            "upload sweep removed %d upload folder(s) of jobs that do not exist", len(removed)
        )
    return removed


def _newest_write_by(
    store: ObjectStore, root: str, owner_of: Callable[[str], str | None]
) -> dict[str, float | None]:
    """The newest write time of the files under ``root``, by owner (``owner_of(key)``; keys
    it returns None for are not ours to judge). None where the store cannot tell for any of
    an owner's files."""
    newest: dict[str, float | None] = {}
    for info in store.list(root):
        owner = owner_of(info.key)
        if owner is None:
            continue
        seen = newest.get(owner, float("-inf"))
        newest[owner] = None if seen is None or info.modified is None else max(seen, info.modified)
    return newest


def _settled(
    orphans: set[str], newest_write: dict[str, float | None], grace_seconds: float
) -> list[str]:
    """The orphans last written more than ``grace_seconds`` ago, sorted.

    The age is judged against the store's clock as the listing reported it, compared with this
    host's clock: the grace (an hour by default) dwarfs any sane skew.
    """
    cutoff = time.time() - grace_seconds
    return sorted(
        orphan
        for orphan in orphans
        if (written := newest_write[orphan]) is not None and written < cutoff
    )


class Sweeper:
    """Runs the sweeps once per interval. The interval is also the grace an unreferenced
    bundle or upload folder must be older than to count as left behind."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.artifact_sweep_interval_seconds
        self.next_run = time.monotonic() + self.interval

    def run_if_due(self) -> None:
        if not self.interval or time.monotonic() < self.next_run:
            return
        self.next_run = time.monotonic() + self.interval
        try:
            sweep_artifacts(self.settings)
            sweep_bundles(self.settings, grace_seconds=self.interval)
            sweep_uploads(self.settings, grace_seconds=self.interval)
        except Exception:
            log.exception("sweep failed")
