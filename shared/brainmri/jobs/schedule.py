"""Cron expressions from settings -> Celery beat schedules.

The schedule belongs to the Celery application every process builds (:mod:`brainmri.jobs.app`),
not to the trainer's task module: beat sends the retrain check by task name and never imports
the task, and a beat process started with the default queues (``brainmri beat`` in compose and
Kubernetes) never loads the trainer's tasks. While the schedule was set there, that beat had
an empty schedule and scheduled retraining never ran.
"""

from __future__ import annotations

from celery.schedules import crontab

from brainmri.errors import ConfigurationError
from brainmri.jobs.names import RETRAIN_CHECK_TASK


def parse_cron(expression: str) -> crontab:
    """``"m h dom mon dow"`` (UTC) -> crontab; raises ConfigurationError when malformed."""
    fields = expression.split()
    if len(fields) != 5:
        raise ConfigurationError(
            f"BRAINMRI_RETRAIN_SCHEDULE must have 5 fields (m h dom mon dow), got {expression!r}"
        )
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        schedule = crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
        )
        schedule.remaining_estimate(schedule.now())  # validates every field
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid cron expression {expression!r}: {exc}") from exc
    return schedule


def beat_schedule(expression: str) -> dict[str, dict[str, object]]:
    """The beat entries for ``BRAINMRI_RETRAIN_SCHEDULE``: one retrain check sent to the train
    queue at each cron tick, or none when the expression is empty."""
    if not expression.strip():
        return {}
    return {
        "retrain-check": {
            "task": RETRAIN_CHECK_TASK,
            "schedule": parse_cron(expression),
            "options": {"queue": "train"},
        }
    }
