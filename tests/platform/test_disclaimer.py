"""Every JSON answer a user reads says what the service is not: a medical device.

Model listings carry headline metrics (AUC, sensitivity); without the disclaimer beside them
they read like a validated product's figures.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from brainmri import DISCLAIMER
from brainmri.config import Settings
from brainmri.db.migrate import upgrade
from brainmri_api.main import create_app
from tests.conftest import make_bundle

USER_KEY = "disclaimer-user-0123456789abcdef"
USER = {"X-API-Key": USER_KEY}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """Embedded mode (SQLite, local store) with a small bundle registered as production."""
    base = tmp_path_factory.mktemp("disclaimer")
    make_bundle(base / "bundle", img_size=48)
    settings = Settings(
        data_dir=base / "data", model_dir=base / "bundle", api_keys=f"{USER_KEY}:user"
    )
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        yield client


def test_model_answers_carry_the_disclaimer(client: TestClient) -> None:
    listing = client.get("/v1/models", headers=USER)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["disclaimer"] == DISCLAIMER
    assert body["items"], "the shipped bundle should be registered on start"
    version = body["items"][0]["version"]
    assert all(item["disclaimer"] == DISCLAIMER for item in body["items"])
    one = client.get(f"/v1/models/{version}", headers=USER)
    assert one.status_code == 200, one.text
    assert one.json()["disclaimer"] == DISCLAIMER
    assert "not a medical device" in DISCLAIMER.lower()
