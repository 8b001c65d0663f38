"""Trainer service end to end: train jobs on S3 data, gated promotion, workers following the
registry, rollback, racing promotions and the scheduled retrain check."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from brainmri.config import Settings
from brainmri.db.models import Job, ModelStage, ModelVersion
from brainmri.db.session import session_scope
from brainmri.errors import BrainMRIError, ConfigurationError
from brainmri.imaging.confine import landlock_abi
from brainmri.jobs.celery_app import create_celery
from brainmri.jobs.names import RETRAIN_CHECK_TASK
from brainmri.jobs.schedule import beat_schedule, parse_cron
from brainmri.phantom import FOLDER_NAMES, phantom_png
from brainmri.registry.gate import promotion_gate
from brainmri.registry.versions import bundle_prefix, promote
from brainmri.storage import open_store
from brainmri_api.auth import key_id
from brainmri_api.main import create_app
from brainmri_trainer.train_job import loop_budget_minutes
from tests.conftest import make_bundle
from tests.helpers import assert_documented_result
from tests.infra import (
    S3Server,
    WorkerProcess,
    services_env,
    settings_from_env,
    wait_for_job,
)

ADMIN_KEY = "trainer-admin-0123456789abcdef"
USER_KEY = "trainer-user-0123456789abcdef"
ADMIN = {"X-API-Key": ADMIN_KEY}
USER = {"X-API-Key": USER_KEY}
TINY = {"arch": "resnet18", "img_size": 64, "batch_size": 16, "val_frac": 0.2, "test_frac": 0.2}


def upload_dataset(s3: S3Server, prefix: str, per_class: int, seed: int) -> None:
    client = s3.client()
    for class_name, folder in FOLDER_NAMES.items():
        for i in range(per_class):
            data = phantom_png(class_name, seed=seed * 1000 + i, size=64)
            client.put_object(
                "datasets",
                f"{prefix}/{folder}/{class_name}_{i:03d}.png",
                io.BytesIO(data),
                len(data),
            )


class TrainerStack:
    def __init__(
        self, env: dict[str, str], client: TestClient, worker: WorkerProcess, trainer: WorkerProcess
    ) -> None:
        self.env, self.client, self.worker, self.trainer = env, client, worker, trainer
        self.settings = settings_from_env(env)

    def predict_version(self) -> str:
        response = self.client.post(
            "/v1/jobs/predict",
            headers=USER,
            data={"cam": "false"},
            files={"file": ("a.png", phantom_png("glioma", seed=1))},
        )
        job = wait_for_job(self.client, response.json()["job_id"], USER)
        assert job["status"] == "succeeded", job
        return job["model_version"]

    def production(self) -> str:
        return self.client.get("/v1/models", headers=USER).json()["production"]


@pytest.fixture(scope="module")
def stack(
    postgres_url: str,
    redis_url: str,
    s3: S3Server,
    service_bucket: str,
    platform_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TrainerStack]:
    base = tmp_path_factory.mktemp("trainer")
    s3.make_bucket("datasets")
    upload_dataset(s3, "train", per_class=30, seed=1)
    env = services_env(
        postgres_url=postgres_url,
        redis_url=redis_url,
        s3=s3,
        bucket=service_bucket,
        data_dir=base / "data",
        bundle=platform_bundle,
        allowed_roots="s3://datasets/",
        api_keys=f"{ADMIN_KEY}:admin,{USER_KEY}:user",
        extra={
            # A random production model calls everything a tumor (sensitivity 1.0), which a
            # small phantom-trained candidate cannot match on a tiny test split; the
            # sensitivity rule itself is covered by test_promotion_gate_rules.
            "BRAINMRI_PROMOTION_MIN_MACRO_F1_GAIN": "0.05",
            "BRAINMRI_PROMOTION_MAX_SENSITIVITY_DROP": "0.5",
            "BRAINMRI_RETRAIN_DATASET": "s3://datasets/retrain/",
            "BRAINMRI_RETRAIN_EPOCHS": "1",
            "BRAINMRI_RETRAIN_TIME_BUDGET_MINUTES": "30",
            "BRAINMRI_MODEL_CHECK_SECONDS": "0.2",
        },
    )
    worker = WorkerProcess(env, base / "worker.log").start()
    trainer = WorkerProcess(env, base / "trainer.log", queues="train").start()
    with TestClient(create_app(settings_from_env(env))) as client:
        yield TrainerStack(env, client, worker, trainer)
    trainer.stop()
    worker.stop()


def train(stack: TrainerStack, **params: object) -> dict:
    response = stack.client.post(
        "/v1/jobs/train",
        headers=ADMIN,
        json={"dataset": "s3://datasets/train/", "recipe": "simple", **TINY, **params},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    seen_epochs: set[int] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = stack.client.get(f"/v1/jobs/{job_id}", headers=ADMIN).json()
        detail = job.get("progress_detail") or {}
        if detail.get("stage") == "training":
            seen_epochs.add(detail["epoch"])
            assert {"train_loss", "val_macro_f1", "epochs"} <= set(detail)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            job["seen_epochs"] = seen_epochs
            return job
        time.sleep(0.1)
    raise AssertionError(f"train job {job_id} did not finish")


def test_train_users_cannot_train_or_promote(stack: TrainerStack) -> None:
    response = stack.client.post(
        "/v1/jobs/train", headers=USER, json={"dataset": "s3://datasets/train/"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    production = stack.production()
    assert stack.client.post(f"/v1/models/{production}/promote", headers=USER).status_code == 403
    assert stack.client.post("/v1/models/brainmri/rollback", headers=USER).status_code == 403
    bad = stack.client.post("/v1/jobs/train", headers=ADMIN, json={"dataset": "/etc"})
    assert bad.status_code == 400


def trained_config(stack: TrainerStack, version: str) -> dict:
    """The training configuration a registered bundle records in its provenance."""
    prefix = bundle_prefix(stack.settings.model_name, version)
    metadata = json.loads(open_store(stack.settings).get(prefix + "metadata.json"))
    return metadata["provenance"]["config"]


def test_train_promote_follow_and_rollback(stack: TrainerStack) -> None:
    original = stack.production()
    assert stack.predict_version() == original
    worker_pid = stack.worker.process.pid

    better = train(stack, epochs=8, lr=2e-3)
    assert better["status"] == "succeeded", better
    result = better["result"]
    openapi = stack.client.get("/openapi.json").json()
    assert_documented_result(openapi, "train", result)
    assert len(better["seen_epochs"]) >= 2  # progress reported per epoch
    assert result["promoted"] is True, result["gate"]
    assert result["test_metrics"]["macro_f1"] > result["production_metrics"]["macro_f1"]
    assert "95% paired interval" in result["gate"]  # the default gate asks for a clear gain
    assert {"eval_report.json", "training_curves.png", "roc_binary.png"} <= set(result["artifacts"])
    if landlock_abi() > 0:  # the job's files were decoded in confined children, not in it
        assert "decode children confined" in stack.trainer.log_path.read_text(errors="replace")
    candidate = result["model_version"]
    assert stack.production() == candidate
    # The worker that started before the promotion now serves the new version, same process.
    assert stack.predict_version() == candidate
    assert stack.worker.process.pid == worker_pid and stack.worker.process.poll() is None

    # The augmentation and weight-average options reach the trainer, not just the job's row.
    chosen = {"invert_prob": 0.5, "head_crop_prob": 0.25, "ema_decay": 0.9, "drop_rate": 0.1}
    worse = train(stack, epochs=1, lr=1e-9, seed=3, **chosen)
    assert worse["status"] == "succeeded", worse
    assert worse["result"]["promoted"] is False
    trained_with = trained_config(stack, worse["result"]["model_version"])
    assert {key: trained_with[key] for key in chosen} == chosen
    assert_documented_result(openapi, "train", worse["result"])
    assert "gain" in worse["result"]["gate"]
    stuck = worse["result"]["model_version"]
    shown = stack.client.get(f"/v1/models/{stuck}", headers=USER).json()
    assert shown["stage"] == "candidate"
    assert "gate" in shown["stage_reason"]
    assert shown["versus_production"]["production_version"] == candidate
    # Listings say where each headline comes from: a trained version's own held-out test
    # split, the shipped bundle's validation and calibration halves.
    headline = shown["headline"]
    assert headline["source"] == "held-out test split"
    assert headline["macro_f1"] == worse["result"]["test_metrics"]["macro_f1"]
    listed = stack.client.get("/v1/models", headers=USER).json()["items"]
    original_row = next(row for row in listed if row["version"] == original)
    assert original_row["headline"]["source"] == "validation and calibration halves"
    paired = shown["versus_production"]["paired_on_same_test"]["metrics"]["macro_f1"]
    assert paired["diff"] == pytest.approx(
        worse["result"]["test_metrics"]["macro_f1"]
        - worse["result"]["production_metrics"]["macro_f1"],
        abs=1e-3,
    )
    assert stack.production() == candidate

    promoted = stack.client.post(
        f"/v1/models/{stuck}/promote", headers=ADMIN, json={"reason": "manual test promotion"}
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["promoted_by"] == key_id(ADMIN_KEY)  # admins see which key
    # Users learn that an admin promoted it, not a hash of the admin's key.
    assert stack.client.get(f"/v1/models/{stuck}", headers=USER).json()["promoted_by"] == (
        "an admin"
    )
    assert stack.predict_version() == stuck
    rolled = stack.client.post("/v1/models/brainmri/rollback", headers=ADMIN)
    assert rolled.status_code == 200 and rolled.json()["version"] == candidate
    rolled_back = stack.client.get(f"/v1/models/{stuck}", headers=USER).json()
    assert rolled_back["stage_reason"] == "rolled back by an admin"
    admin_view = stack.client.get(f"/v1/models/{stuck}", headers=ADMIN).json()
    assert admin_view["stage_reason"] == f"rolled back by {key_id(ADMIN_KEY)}"
    assert stack.predict_version() == candidate
    listed = stack.client.get("/v1/models", headers=USER).json()
    stages = {item["version"]: item["stage"] for item in listed["items"]}
    assert stages[candidate] == "production" and stages[stuck] == "archived"
    assert stages[original] == "archived"


def test_cancel_stops_training_and_registers_nothing(stack: TrainerStack) -> None:
    response = stack.client.post(
        "/v1/jobs/train",
        headers=ADMIN,
        json={"dataset": "s3://datasets/train/", **TINY, "epochs": 50},
    )
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        detail = stack.client.get(f"/v1/jobs/{job_id}", headers=ADMIN).json().get("progress_detail")
        if detail and detail.get("stage") == "training":
            break
        time.sleep(0.1)
    stack.client.post(f"/v1/jobs/{job_id}/cancel", headers=ADMIN)
    job = wait_for_job(stack.client, job_id, ADMIN, timeout=120)
    assert job["status"] == "cancelled"
    assert job["progress_detail"]["epoch"] < 50
    with session_scope(stack.settings.resolved_database_url) as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(ModelVersion)
                .where(ModelVersion.training_job_id == job_id)
            )
            == 0
        )


def test_time_budget_fits_the_run_and_is_capped_by_the_time_limit(stack: TrainerStack) -> None:
    """A budgeted job ends its schedule early and still evaluates and registers a candidate;
    a budget longer than the job's time limit allows is refused before anything is queued."""
    budgeted = train(stack, epochs=200, time_budget_minutes=0.02, auto_promote=False)
    assert budgeted["status"] == "succeeded", budgeted
    result = budgeted["result"]
    assert result["epochs_requested"] == 200
    assert result["time_budget_minutes"] == pytest.approx(0.02)
    assert 1 <= result["epochs_run"] < 200
    assert result["model_version"] and result["stage"] == "candidate"

    ceiling = stack.settings.train_budget_ceiling_minutes
    jobs_before = stack.client.get("/v1/jobs", headers=ADMIN).json()["total"]
    too_long = stack.client.post(
        "/v1/jobs/train",
        headers=ADMIN,
        json={"dataset": "s3://datasets/train/", "time_budget_minutes": ceiling + 1},
    )
    assert too_long.status_code == 422, too_long.text
    error = too_long.json()["error"]
    assert error["code"] == "time_budget_too_long"
    assert "BRAINMRI_TRAIN_TIME_LIMIT" in error["message"]
    assert stack.client.get("/v1/jobs", headers=ADMIN).json()["total"] == jobs_before
    negative = stack.client.post(
        "/v1/jobs/train",
        headers=ADMIN,
        json={"dataset": "s3://datasets/train/", "time_budget_minutes": 0},
    )
    assert negative.status_code == 422
    assert "time_budget_minutes" in negative.json()["error"]["message"]


def test_loop_budget_is_the_request_within_what_the_time_limit_leaves() -> None:
    settings = Settings(train_time_limit=3600, train_budget_share=0.5)  # 30 minutes to train
    assert settings.train_budget_ceiling_minutes == 30
    assert loop_budget_minutes(settings, 10, elapsed_s=60) == 10
    assert loop_budget_minutes(settings, None, elapsed_s=60) == pytest.approx(29)
    assert loop_budget_minutes(settings, 45, elapsed_s=300) == pytest.approx(25)
    with pytest.raises(BrainMRIError) as caught:
        loop_budget_minutes(settings, 10, elapsed_s=1801)
    assert caught.value.code == "time_limit_exceeded"
    assert "BRAINMRI_TRAIN_TIME_LIMIT" in str(caught.value)


def test_a_retrain_budget_beyond_the_time_limit_is_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match="BRAINMRI_RETRAIN_TIME_BUDGET_MINUTES=31"):
        Settings(train_time_limit=3600, train_budget_share=0.5, retrain_time_budget_minutes=31)
    assert (
        Settings(train_time_limit=3600, retrain_time_budget_minutes=30).retrain_time_budget_minutes
        == 30
    )


def _register_bundles(stack: TrainerStack, folder: Path, seeds: Sequence[int]) -> list[str]:
    """Register one small phantom bundle per seed as a candidate; returns their versions."""
    from brainmri.registry.versions import register_bundle
    from brainmri.storage import open_store

    store = open_store(stack.settings)
    versions = []
    for seed in seeds:
        bundle = make_bundle(folder / f"b{seed}", img_size=48, seed=seed)
        with session_scope(stack.settings.resolved_database_url) as session:
            row = register_bundle(session, store, folder / f"b{seed}", name="brainmri")
        assert row.version == bundle.version
        versions.append(row.version)
    return versions


def _race(
    url: str, actions: Sequence[Callable[[Session], object]], rounds: int
) -> list[BaseException]:
    """Run each action in its own thread, ``rounds`` times, one transaction per call; returns
    every exception the threads hit (a deadlock or a conflict), which a thread alone would
    only print."""
    failures: list[BaseException] = []

    def repeat(action: Callable[[Session], object]) -> None:
        for _ in range(rounds):
            try:
                with session_scope(url) as session:
                    action(session)
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=repeat, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def _production_versions(url: str) -> list[str]:
    with session_scope(url) as session:
        return list(
            session.scalars(
                select(ModelVersion.version).where(
                    ModelVersion.name == "brainmri", ModelVersion.stage == ModelStage.PRODUCTION
                )
            ).all()
        )


def test_racing_promotions_never_leave_two_production_versions(
    stack: TrainerStack, tmp_path: Path
) -> None:
    url = stack.settings.resolved_database_url
    versions = _register_bundles(stack, tmp_path, (21, 22, 23))
    failures = _race(
        url,
        [functools.partial(promote, version=version, by="race") for version in versions],
        rounds=15,
    )
    assert len(_production_versions(url)) == 1
    # Promotions of one model are serialised, so every one of them succeeds in turn.
    assert failures == []
    # Put the trained candidate back for the other tests of this module.
    stack.client.post("/v1/models/brainmri/rollback", headers=ADMIN)


def test_racing_rollbacks_all_succeed_and_agree_on_the_previous_version(
    stack: TrainerStack, tmp_path: Path
) -> None:
    from brainmri.registry.versions import rollback

    url = stack.settings.resolved_database_url
    before = stack.production()
    first, second = _register_bundles(stack, tmp_path, (31, 32))
    for version in (first, second):
        with session_scope(url) as session:
            promote(session, version=version, by="setup")
    race_rollback = functools.partial(rollback, name="brainmri", by="race")
    failures = _race(url, [race_rollback] * 3, rounds=5)
    assert failures == []
    # Each rollback returns to the most recently promoted earlier version, so 15 serialised
    # rollbacks from the second new version alternate between the two: an odd count ends on
    # the first. Two rollbacks that read "previous" before either committed would skip one.
    assert _production_versions(url) == [first]
    with session_scope(url) as session:
        promote(session, version=before, by="test cleanup")


def _train_jobs(stack: TrainerStack) -> int:
    with session_scope(stack.settings.resolved_database_url) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.kind == "train", Job.owner == "scheduler")
            )
            or 0
        )


def _latest_scheduled_job(stack: TrainerStack) -> dict:
    """Status, params, result and error of the newest scheduler-owned train job."""
    with session_scope(stack.settings.resolved_database_url) as session:
        job = session.scalars(
            select(Job)
            .where(Job.kind == "train", Job.owner == "scheduler")
            .order_by(Job.created_at.desc())
        ).first()
        assert job is not None
        return {
            "status": job.status,
            "params": job.params,
            "result": job.result,
            "error": job.error,
        }


CHECK_LOGGED = re.compile(r"retrain check: ([^\n\"]+)")


def _check_reasons(stack: TrainerStack) -> list[str]:
    """Every retrain decision the trainer has logged so far, oldest first."""
    return CHECK_LOGGED.findall(stack.trainer.log_path.read_text(errors="replace"))


def _wait_for_check(stack: TrainerStack, seen: int, timeout: float = 120) -> str:
    """The reason of the next decision after the first ``seen``, once any train job it started
    has finished: the check must have run, not merely have had time to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reasons = _check_reasons(stack)
        if len(reasons) > seen:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the trainer logged no retrain decision")
    while time.monotonic() < deadline + 240:
        with session_scope(stack.settings.resolved_database_url) as session:
            active = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.kind == "train", Job.status.in_(("queued", "running")))
            )
        if not active:
            return reasons[seen]
        time.sleep(0.2)
    raise AssertionError("the retrain job did not finish")


def _run_check(stack: TrainerStack) -> str:
    """Send the retrain check to the trainer as beat does; return the decision it logged."""
    seen = len(_check_reasons(stack))
    create_celery(stack.settings).send_task(RETRAIN_CHECK_TASK, queue="train")
    return _wait_for_check(stack, seen)


def test_scheduled_retrain_runs_only_when_the_dataset_changes(
    stack: TrainerStack, s3: S3Server
) -> None:
    upload_dataset(s3, "retrain", per_class=12, seed=7)
    start = _train_jobs(stack)
    assert _run_check(stack) == "dataset changed"
    assert _train_jobs(stack) == start + 1  # new data: a retrain job ran
    scheduled = _latest_scheduled_job(stack)
    assert scheduled["status"] == "succeeded", scheduled["error"]
    assert scheduled["params"]["time_budget_minutes"] == 30  # the retrain budget setting
    assert scheduled["params"]["recipe"] == "shipped"  # the default model's own recipe
    assert scheduled["result"]["time_budget_minutes"] == 30
    # Unchanged data: skipped, whether the candidate was promoted (production was trained on
    # it) or kept out by the gate (a version already holds its fingerprint).
    reason = _run_check(stack)
    assert reason.startswith(("dataset unchanged", "already trained on this data")), reason
    assert _train_jobs(stack) == start + 1
    data = phantom_png("glioma", seed=4242, size=64)
    s3.client().put_object("datasets", "retrain/glioma/new.png", io.BytesIO(data), len(data))
    assert _run_check(stack) == "dataset changed"
    assert _train_jobs(stack) == start + 2  # changed again: retrained


def test_beat_with_default_queues_sends_the_retrain_check(
    stack: TrainerStack, s3: S3Server, tmp_path: Path
) -> None:
    """`brainmri beat` as compose and Kubernetes run it (BRAINMRI_WORKER_QUEUES unset, so its
    process never loads the trainer's tasks) must still send the check, and the trainer must
    run it. The schedule used to be set only where the trainer's tasks were imported, so this
    beat ran with an empty schedule and scheduled retraining never happened."""
    env = {key: value for key, value in stack.env.items() if key != "BRAINMRI_WORKER_QUEUES"}
    env.update(
        {
            "BRAINMRI_RETRAIN_SCHEDULE": "* * * * *",  # fires at the next minute boundary
            "BRAINMRI_DATA_DIR": str(tmp_path / "beat"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    upload_dataset(s3, "retrain", per_class=12, seed=7)  # whichever way the check decides
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINMRI_")}
    log_path = tmp_path / "beat.log"
    seen = len(_check_reasons(stack))
    with log_path.open("wb") as log:
        beat = subprocess.Popen(
            [sys.executable, "-m", "brainmri.cli.main", "beat"],
            env={**base_env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 90
            while "Sending due task retrain-check" not in log_path.read_text(errors="replace"):
                assert beat.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.5)
        finally:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(timeout=30)
    _wait_for_check(stack, seen)


def test_beat_schedule_from_cron() -> None:
    assert beat_schedule("") == {}
    schedule = beat_schedule("30 3 * * 0")
    assert schedule["retrain-check"]["task"] == RETRAIN_CHECK_TASK
    assert parse_cron("*/5 * * * *").minute == set(range(0, 60, 5))
    from brainmri.errors import ConfigurationError

    for bad in ("* * *", "61 * * * *", "a b c d e"):
        with pytest.raises(ConfigurationError):
            parse_cron(bad)


def test_promotion_gate_rules() -> None:
    prod = {"macro_f1": 0.90, "sensitivity": 0.99}
    assert promotion_gate(
        {"macro_f1": 0.93, "sensitivity": 0.99},
        prod,
        min_macro_f1_gain=0.01,
        max_sensitivity_drop=0.0,
    ).promote
    assert not promotion_gate(
        {"macro_f1": 0.905, "sensitivity": 0.99},
        prod,
        min_macro_f1_gain=0.01,
        max_sensitivity_drop=0.0,
    ).promote
    lower_sensitivity = promotion_gate(
        {"macro_f1": 0.95, "sensitivity": 0.97},
        prod,
        min_macro_f1_gain=0.01,
        max_sensitivity_drop=0.0,
    )
    assert not lower_sensitivity.promote and "sensitivity" in lower_sensitivity.reason
    assert promotion_gate(
        {"macro_f1": 0.5}, None, min_macro_f1_gain=0.01, max_sensitivity_drop=0.0
    ).promote


def test_promotion_gate_asks_for_a_gain_clear_of_noise() -> None:
    prod, candidate = {"macro_f1": 0.900}, {"macro_f1": 0.912}
    rules = {"min_macro_f1_gain": 0.005, "max_sensitivity_drop": 0.0}
    noisy = {"diff": 0.012, "ci": (-0.004, 0.027)}
    clear = {"diff": 0.012, "ci": (0.003, 0.022)}
    assert promotion_gate(candidate, prod, **rules, paired_macro_f1=noisy).promote  # not asked
    held = promotion_gate(candidate, prod, **rules, paired_macro_f1=noisy, require_clear_gain=True)
    assert not held.promote
    assert "-0.0040 to +0.0270" in held.reason and "noise" in held.reason
    passed = promotion_gate(
        candidate, prod, **rules, paired_macro_f1=clear, require_clear_gain=True
    )
    assert passed.promote and "+0.0030 to +0.0220" in passed.reason
    assert not promotion_gate(candidate, prod, **rules, require_clear_gain=True).promote
    # The fixed margin still applies on top of a clear interval.
    small = promotion_gate(
        {"macro_f1": 0.903}, prod, **rules, paired_macro_f1=clear, require_clear_gain=True
    )
    assert not small.promote and "gain" in small.reason
