"""Scheduled retraining: start a train job only when the dataset changed.

Runs under a database lease so that two beat schedulers (or two overlapping ticks) never start
two runs, and does nothing while any train job is still queued or running. The outcome is an
ordinary train job owned by ``scheduler``, so it is visible, cancellable and gated like any other.
"""

from __future__ import annotations

import logging
import socket
import uuid
from dataclasses import dataclass

from celery import Celery
from sqlalchemy import func, select

from brainmri.config import Settings
from brainmri.data.materialize import fingerprint, list_dataset
from brainmri.db.jobs import create_job, delete_job
from brainmri.db.locks import release_lock, try_lock
from brainmri.db.models import Job, JobKind, JobStatus, ModelVersion
from brainmri.db.session import session_scope
from brainmri.jobs.enqueue import send_job
from brainmri.registry.versions import production
from brainmri.sources import resolve_source

log = logging.getLogger(__name__)
LOCK = "scheduled-retrain"
SCHEDULER_OWNER = "scheduler"


@dataclass(frozen=True, slots=True)
class RetrainDecision:
    started_job: str | None
    reason: str
    fingerprint: str | None = None


def check_and_retrain(settings: Settings, app: Celery) -> RetrainDecision:
    if not settings.retrain_dataset:
        return RetrainDecision(None, "no BRAINMRI_RETRAIN_DATASET configured")
    holder = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
    url = settings.resolved_database_url
    with session_scope(url) as session:
        if not try_lock(session, name=LOCK, holder=holder, ttl_seconds=600):
            return RetrainDecision(None, "another retrain check holds the lock")
    try:
        with session_scope(url) as session:
            active = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(
                    Job.kind == JobKind.TRAIN, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))
                )
            )
            current = production(session, settings.model_name)
            trained_on = current.data_fingerprint if current else None
        if active:
            return RetrainDecision(None, "a train job is already queued or running")
        source = resolve_source(settings.retrain_dataset, settings)
        digest = fingerprint(list_dataset(source, settings))
        if digest == trained_on:
            log.info("retrain skipped: dataset unchanged (%s)", digest[:12])
            return RetrainDecision(None, "dataset unchanged since the production model", digest)
        with session_scope(url) as session:
            tried = session.scalar(
                select(ModelVersion.version).where(
                    ModelVersion.name == settings.model_name,
                    ModelVersion.data_fingerprint == digest,
                )
            )
        if tried:
            # A candidate was trained on exactly this data and the gate kept it out of
            # production; retraining on unchanged data would only repeat that.
            return RetrainDecision(None, f"already trained on this data ({tried})", digest)
        job_id = str(uuid.uuid4())
        params = {
            "dataset": source.uri,
            "recipe": settings.retrain_recipe,
            "epochs": settings.retrain_epochs,
            "time_budget_minutes": settings.retrain_time_budget_minutes,
            "auto_promote": True,
            "scheduled": True,
        }
        with session_scope(url) as session:
            create_job(
                session, job_id=job_id, kind=JobKind.TRAIN, owner=SCHEDULER_OWNER, params=params
            )
        try:
            send_job(app, job_id=job_id, kind=JobKind.TRAIN)
        except Exception:
            with session_scope(url) as session:
                delete_job(session, job_id)
            raise
        log.info(
            "retrain started as job %s: dataset fingerprint %s != %s",
            job_id,
            digest[:12],
            (trained_on or "none")[:12],
        )
        return RetrainDecision(job_id, "dataset changed", digest)
    finally:
        with session_scope(url) as session:
            release_lock(session, name=LOCK, holder=holder)
