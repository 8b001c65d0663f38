"""Celery tasks of the trainer: training jobs and the scheduled retrain check."""

from __future__ import annotations

import logging

from brainmri.config import get_settings
from brainmri.jobs.app import app
from brainmri.jobs.names import RETRAIN_CHECK_TASK, TRAIN_TASK
from brainmri.jobs.runtime import JobContext, JobOutcome, job_task
from brainmri_trainer.retrain import check_and_retrain
from brainmri_trainer.train_job import run_train

log = logging.getLogger(__name__)


@job_task(app, name=TRAIN_TASK, time_limit=lambda s: s.train_time_limit)
def train(ctx: JobContext) -> JobOutcome:
    return run_train(ctx)


@app.task(name=RETRAIN_CHECK_TASK, acks_late=False, ignore_result=True)
def retrain_check() -> str:
    decision = check_and_retrain(get_settings(), app)
    log.info("retrain check: %s", decision.reason)
    return decision.reason
