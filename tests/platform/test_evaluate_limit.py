"""An evaluate job's ``limit`` is checked against ``BRAINMRI_MAX_EVAL_IMAGES`` at the door.

Before, a limit above the setting was accepted (202) and the job then failed with "... pass
a limit", although the user had passed one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from brainmri.config import Settings
from brainmri.db.models import Job
from brainmri.db.session import session_scope
from tests.infra import queued_only_api

USER_KEY = "limit-user-0123456789abcdef"
USER = {"X-API-Key": USER_KEY}
MOST = 10


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, Settings, Path]:
    return queued_only_api(
        tmp_path_factory.mktemp("evaluate-limit"), f"{USER_KEY}:user", max_eval_images=MOST
    )


def evaluate_jobs(settings: Settings) -> int:
    with session_scope(settings.resolved_database_url) as session:
        return session.query(Job).filter(Job.kind == "evaluate").count()


@pytest.mark.parametrize("limit", [MOST + 1, 10**9])
def test_a_limit_above_the_setting_is_a_422_naming_both(
    api: tuple[TestClient, Settings, Path], limit: int
) -> None:
    client, settings, dataset = api
    before = evaluate_jobs(settings)
    response = client.post(
        "/v1/jobs/evaluate", headers=USER, json={"source": str(dataset), "limit": limit}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "limit" in error["message"]
    assert "BRAINMRI_MAX_EVAL_IMAGES" in error["message"]
    assert str(MOST) in error["message"]
    assert evaluate_jobs(settings) == before  # nothing was queued


@pytest.mark.parametrize("limit", [0, 1, MOST])
def test_limits_up_to_the_setting_are_accepted_as_given(
    api: tuple[TestClient, Settings, Path], limit: int
) -> None:
    client, settings, dataset = api
    response = client.post(
        "/v1/jobs/evaluate", headers=USER, json={"source": str(dataset), "limit": limit}
    )
    assert response.status_code == 202, response.text
    with session_scope(settings.resolved_database_url) as session:
        job = session.get(Job, response.json()["job_id"])
        assert job is not None
        assert job.params["limit"] == limit
