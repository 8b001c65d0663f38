"""Celery task definitions of the worker (bodies live in predict.py and evaluate.py)."""

from __future__ import annotations

from brainmri.jobs.app import app
from brainmri.jobs.names import EVALUATE_TASK, PREDICT_TASK
from brainmri.jobs.runtime import JobContext, JobOutcome, job_task
from brainmri_worker.evaluate import run_evaluate
from brainmri_worker.model import production_model
from brainmri_worker.predict import run_predict


@job_task(app, name=PREDICT_TASK, time_limit=lambda s: s.predict_time_limit)
def predict(ctx: JobContext) -> JobOutcome:
    return run_predict(ctx, production_model().engine())


@job_task(app, name=EVALUATE_TASK, time_limit=lambda s: s.evaluate_time_limit)
def evaluate(ctx: JobContext) -> JobOutcome:
    return run_evaluate(ctx, production_model().engine())
