"""Routing: a job's message lands in its own queue only - never copied into the others."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib

from brainmri.config import Settings
from brainmri.jobs.celery_app import create_celery
from brainmri.jobs.enqueue import send_job
from brainmri.jobs.queues import queue_depths


@pytest.fixture(params=["redis", "embedded"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/12"
        redis_lib.Redis.from_url(url).flushdb()
        return Settings(broker_url=url, data_dir=tmp_path)
    return Settings(data_dir=tmp_path)


def test_each_kind_reaches_exactly_its_queue(settings: Settings) -> None:
    app = create_celery(settings)
    # Declare every queue first, as workers consuming them would.
    with app.connection_for_write() as connection:
        for queue in app.amqp.queues.values():
            queue.bind(connection.default_channel).declare()
    assert queue_depths(settings) == {"predict": 0, "evaluate": 0, "train": 0}
    send_job(app, job_id="job-predict", kind="predict")
    send_job(app, job_id="job-evaluate-1", kind="evaluate")
    send_job(app, job_id="job-evaluate-2", kind="evaluate")
    send_job(app, job_id="job-train", kind="train")
    assert queue_depths(settings) == {"predict": 1, "evaluate": 2, "train": 1}
