"""A train job's ``seed``: refused at the door when NumPy or PyTorch could not use it, and a
seed of 0 reaches both the dataset split and the trainer as 0.

Before, ``seed=-1`` or ``2**70`` were accepted (202) and the job then crashed in
``np.random.default_rng``/``torch.manual_seed``; and ``params.get("seed") or 42`` split a
seed-0 run with 42 while the trainer used 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from brainmri.config import Settings
from brainmri.db.models import Job
from brainmri.db.session import session_scope
from brainmri.training.recipes import make_config, train_options
from tests.infra import queued_only_api

ADMIN_KEY = "seed-admin-0123456789abcdef"
ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, Settings, Path]:
    return queued_only_api(tmp_path_factory.mktemp("train-seed"), f"{ADMIN_KEY}:admin")


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_out_of_range_seed_is_a_422_naming_seed(
    api: tuple[TestClient, Settings, Path], seed: int
) -> None:
    client, _, dataset = api
    response = client.post(
        "/v1/jobs/train", headers=ADMIN, json={"dataset": str(dataset), "seed": seed}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "seed" in error["message"]


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_seeds_in_range_are_stored_as_given(
    api: tuple[TestClient, Settings, Path], seed: int
) -> None:
    client, settings, dataset = api
    response = client.post(
        "/v1/jobs/train", headers=ADMIN, json={"dataset": str(dataset), "seed": seed}
    )
    assert response.status_code == 202, response.text
    with session_scope(settings.resolved_database_url) as session:
        job = session.get(Job, response.json()["job_id"])
        assert job is not None
        assert job.params["seed"] == seed


def test_seed_zero_reaches_the_split_and_the_trainer_as_zero() -> None:
    options = train_options({"dataset": "s3://d/", "seed": 0})
    assert options["seed"] == 0  # the split's seed
    assert make_config("simple", **options).seed == 0  # the trainer's


def test_no_seed_means_the_trainers_default_for_both() -> None:
    options = train_options({"dataset": "s3://d/", "seed": None, "epochs": 3})
    config = make_config("simple", **options)
    assert options["seed"] == config.seed == 42
    assert config.epochs == 3


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"crop": "head", "head_crop_prob": 0.3}, "head_crop_prob"),
        ({"invert_prob": 1.5}, "invert_prob"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"crop": "middle"}, "crop"),
    ],
)
def test_training_options_that_cannot_run_are_a_422_naming_them(
    api: tuple[TestClient, Settings, Path], options: dict[str, object], named: str
) -> None:
    client, _, dataset = api
    response = client.post(
        "/v1/jobs/train", headers=ADMIN, json={"dataset": str(dataset), **options}
    )
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]["message"]


def test_training_options_are_stored_and_make_the_trainers_config(
    api: tuple[TestClient, Settings, Path],
) -> None:
    client, settings, dataset = api
    chosen = {
        "crop": "none",
        "invert_prob": 0.2,
        "head_crop_prob": 0.3,
        "ema_decay": 0.998,
        "drop_rate": 0.1,
        "warmup_epochs": 2.0,
    }
    response = client.post(
        "/v1/jobs/train",
        headers=ADMIN,
        json={"dataset": str(dataset), "recipe": "simple", **chosen},
    )
    assert response.status_code == 202, response.text
    with session_scope(settings.resolved_database_url) as session:
        job = session.get(Job, response.json()["job_id"])
        assert job is not None
        config = make_config(job.params["recipe"], **train_options(job.params))
    assert {key: getattr(config, key) for key in chosen} == chosen
    assert config.img_size == 224  # what was not given keeps the recipe's value
