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
from dataclasses import dataclass, field

from brainmri.config import Settings
from brainmri.db.jobs import artifact_owners
from brainmri.db.models import JobStatus
from brainmri.db.session import session_scope
from brainmri.jobs.artifacts import remove_attempts, stored_attempts
from brainmri.registry.versions import MODELS_PREFIX, bundle_prefix, registered_prefixes
from brainmri.storage import open_store

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


def sweep_bundles(settings: Settings, suspects: set[str]) -> tuple[list[str], set[str]]:
    """Remove model bundle folders with no registry row; ``(removed, still suspected)``.

    A bundle is uploaded first and recorded after, in one transaction, so a folder without
    a row is either an upload in progress or one whose trainer was killed mid-way. Only a
    folder already found without a row by the previous sweep (``suspects``), a whole sweep
    interval earlier, is removed: no upload takes that long.
    """
    store = open_store(settings)
    listed = {
        bundle_prefix(*info.key.split("/")[1:3])
        for info in store.list(f"{MODELS_PREFIX}/")
        if info.key.count("/") >= 3
    }
    if not listed:
        return [], set()
    with session_scope(settings.resolved_database_url) as session:
        orphans = listed - registered_prefixes(session)
    removed = sorted(orphans & suspects)
    for prefix in removed:
        store.delete_prefix(prefix)
    if removed:
        log.warning("bundle sweep removed unregistered bundle folders: %s", removed)
    return removed, orphans - set(removed)


class Sweeper:
    """Runs both sweeps once per interval; remembers which bundle folders it suspects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.artifact_sweep_interval_seconds
        self.next_run = time.monotonic() + self.interval
        self.bundle_suspects: set[str] = set()

    def run_if_due(self) -> None:
        if not self.interval or time.monotonic() < self.next_run:
            return
        self.next_run = time.monotonic() + self.interval
        try:
            sweep_artifacts(self.settings)
            _, self.bundle_suspects = sweep_bundles(self.settings, self.bundle_suspects)
        except Exception:
            log.exception("sweep failed")
