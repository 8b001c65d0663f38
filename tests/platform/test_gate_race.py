"""The gate's promotion is a compare-and-swap against the production version it compared with.

A train job reads production, trains for hours, then promotes. If an admin promotes or rolls
back meanwhile, the gate's verdict is about a model that is no longer production: the
candidate must then be registered only, and the admin's choice must stay in production.
Real PostgreSQL (a fresh database), real object store folder, the trainer's own registration.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from brainmri.config import Settings
from brainmri.db.jobs import create_job
from brainmri.db.models import Job, ModelStage, ModelVersion
from brainmri.db.session import session_scope
from brainmri.db.types import utcnow
from brainmri.jobs.results import TrainResult
from brainmri.jobs.runtime import JobContext, JobOwnershipLost
from brainmri.registry.gate import GateDecision
from brainmri.registry.versions import ProductionChangedError, promote, register_bundle
from brainmri.storage import open_store
from brainmri_trainer.train_job import Registration, _register, run_train
from tests.conftest import make_bundle
from tests.infra import claim_as, fresh_database

PASSING = GateDecision(True, "macro-F1 0.9600 vs production 0.9500 (gain +0.0100)")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[Settings, Path]]:
    """A Postgres registry with v1 in production and v2 registered as a candidate."""
    base = tmp_path / "base"
    make_bundle(base, img_size=32, seed=1)
    with fresh_database() as url:
        settings = Settings(database_url=url, data_dir=tmp_path / "data", model_dir=base)
        store = open_store(settings)
        with session_scope(url) as session:
            register_bundle(
                session,
                store,
                _versioned(base, tmp_path, "v1"),
                name="brainmri",
                stage="production",
            )
            register_bundle(session, store, _versioned(base, tmp_path, "v2"), name="brainmri")
        yield settings, base


def _versioned(base: Path, tmp_path: Path, version: str) -> Path:
    folder = tmp_path / f"bundle-{version}"
    shutil.copytree(base, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["version"] = version
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def _context(settings: Settings, job_id: str = "train-job-1") -> JobContext:
    """The context of a running train job that this worker has claimed."""
    with session_scope(settings.resolved_database_url) as session:
        create_job(session, job_id=job_id, kind="train", owner="admin", params={})
    claim = claim_as(settings.resolved_database_url, job_id, "trainer-a")
    return JobContext(settings, claim.job, claim.attempt)


def _taken_over(settings: Settings, job_id: str) -> JobContext:
    """The job's worker went silent; the reaper's requeue let another trainer claim it."""
    with session_scope(settings.resolved_database_url) as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1))
        )
    claim = claim_as(settings.resolved_database_url, job_id, "trainer-b")
    return JobContext(settings, claim.job, claim.attempt)


def _stages(url: str) -> dict[str, tuple[ModelStage, str | None]]:
    with session_scope(url) as session:
        return {
            row.version: (ModelStage(row.stage), row.stage_reason)
            for row in session.query(ModelVersion).all()
        }


def _register_candidate_compared_with_v1(
    settings: Settings, base: Path, tmp_path: Path, ctx: JobContext | None = None
) -> Registration:
    """What the train job does at its end: register "cand", whose gate passed against v1."""
    return _register(
        ctx or _context(settings),
        _versioned(base, tmp_path, "cand"),
        {"production_version": "v1"},
        "fingerprint",
        PASSING,
        auto_promote=True,
    )


def test_production_changed_during_training_registers_the_candidate_only(
    registry: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, base = registry
    url = settings.resolved_database_url
    # The train job compared its candidate with v1; while it trained, an admin promoted v2.
    with session_scope(url) as session:
        promote(session, version="v2", by="admin", reason="manual")
    registration = _register_candidate_compared_with_v1(settings, base, tmp_path)
    assert registration.promoted is False
    stages = _stages(url)
    assert stages["v2"] == (ModelStage.PRODUCTION, "manual")
    assert stages["v1"][0] == ModelStage.ARCHIVED
    stage, reason = stages["cand"]
    assert stage == ModelStage.CANDIDATE
    assert reason == registration.stage_reason
    assert reason is not None
    assert "production changed from v1 to v2 during training; not promoted" in reason
    assert "compare again or promote by hand" in reason
    # The bundle stays registered and stored, so an admin can still promote it by hand.
    assert open_store(settings).exists("models/brainmri/cand/metadata.json")


def test_production_unchanged_still_promotes(
    registry: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, base = registry
    url = settings.resolved_database_url
    registration = _register_candidate_compared_with_v1(settings, base, tmp_path)
    assert registration.promoted is True
    stages = _stages(url)
    assert stages["cand"] == (ModelStage.PRODUCTION, PASSING.reason)
    assert stages["v1"] == (ModelStage.ARCHIVED, "replaced by cand")


def test_promote_with_a_stale_expectation_changes_nothing(
    registry: tuple[Settings, Path],
) -> None:
    settings, _ = registry
    url = settings.resolved_database_url
    with session_scope(url) as session:
        promote(session, version="v2", by="admin")
    with pytest.raises(ProductionChangedError) as raised, session_scope(url) as session:
        promote(session, version="v1", by="gate", expected_production="v1")
    assert (raised.value.expected, raised.value.actual) == ("v1", "v2")
    assert _stages(url)["v2"][0] == ModelStage.PRODUCTION
    with session_scope(url) as session:  # the matching expectation goes through
        promote(session, version="v1", by="gate", expected_production="v2")
    assert _stages(url)["v1"][0] == ModelStage.PRODUCTION


def test_a_train_job_taken_over_by_another_worker_registers_nothing(
    registry: tuple[Settings, Path], tmp_path: Path
) -> None:
    """Its heartbeats went stale (a stalled host), the reaper handed the job to another
    trainer, and then the first one finished: its result is discarded, so its model must not
    be registered, let alone promoted."""
    settings, base = registry
    url = settings.resolved_database_url
    ctx = _context(settings, "train-job-2")
    assert _taken_over(settings, "train-job-2").attempt == 2
    with pytest.raises(JobOwnershipLost):
        _register_candidate_compared_with_v1(settings, base, tmp_path, ctx)
    stages = _stages(url)
    assert "cand" not in stages
    assert stages["v1"][0] == ModelStage.PRODUCTION
    assert not list(open_store(settings).list("models/brainmri/cand/"))


def test_a_rerun_of_a_train_job_that_registered_its_model_does_not_train_again(
    registry: tuple[Settings, Path], tmp_path: Path
) -> None:
    """Registration commits before the job's success; a crash in between requeues the job.
    The rerun ends with the version already made instead of training for hours and adding a
    second version for the same request."""
    settings, base = registry
    url = settings.resolved_database_url
    first = _context(settings, "train-job-3")
    registration = _register_candidate_compared_with_v1(settings, base, tmp_path, first)
    assert registration.promoted is True
    rerun = _taken_over(settings, "train-job-3")  # its worker died before recording it
    versions_before = set(_stages(url))

    outcome = run_train(rerun)  # no dataset in its params: it must not get that far

    assert outcome.model_version == "cand"
    assert outcome.result["promoted"] is True
    assert outcome.result["stage"] == ModelStage.PRODUCTION
    assert "not trained again" in outcome.result["recovered"]
    TrainResult.model_validate(outcome.result)  # the documented shape, nothing undocumented
    assert PASSING.reason in outcome.result["gate"]
    assert set(_stages(url)) == versions_before
