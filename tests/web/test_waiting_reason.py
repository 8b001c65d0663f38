"""A job that no live worker can take says why it waits, wherever a user looks: the API, the
CLI (``jobs show`` and ``--wait``) and the web page. Embedded mode is started with its train
worker left out (``BRAINMRI_WORKER_QUEUES=predict,evaluate``), as on a gateway host whose
trainer is down; predict jobs on the same stack still run and carry no such note."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brainmri.client import BrainMRIClient
from brainmri.phantom import phantom_png, write_phantom_dataset
from tests.infra import EmbeddedServer, poll_readyz
from tests.web.conftest import Stack, cli, screenshot, signed_in_tab

pytestmark = pytest.mark.slow

REASON = "no live worker consumes the train queue"


@pytest.fixture(scope="module")
def trainless(platform_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("trainless-stack")
    allowed = base / "allowed"
    write_phantom_dataset(allowed / "train", per_class=2, size=64, seed=4)
    server = EmbeddedServer(
        base / "data", platform_bundle, allowed, worker_groups=("predict,evaluate",)
    )
    yield Stack(server, allowed)
    server.stop()


@pytest.fixture(scope="module")
def waiting_job(trainless: Stack) -> Iterator[str]:
    """A train job nobody will take; cancelled at the end, which must clear the note."""
    with BrainMRIClient(trainless.base, trainless.key) as client:
        job_id = client.submit_train(str(trainless.allowed / "train"), epochs=1)["job_id"]
        yield job_id
        cancelled = client.cancel_job(job_id)
        assert cancelled["status"] == "cancelled"
        assert not client.get_job(job_id).get("waiting_reason")


def test_the_api_names_the_queue_nobody_consumes(trainless: Stack, waiting_job: str) -> None:
    headers = {"X-API-Key": trainless.key}
    job = httpx.get(f"{trainless.base}/v1/jobs/{waiting_job}", headers=headers).json()
    assert job["status"] == "queued"
    assert REASON in job["waiting_reason"]
    with httpx.Client(base_url=trainless.base) as plain:
        ready = poll_readyz(plain, lambda body: body["workers"]["predict"] >= 1)
    assert ready["workers"]["train"] == 0
    assert any("train" in warning for warning in ready["warnings"])
    # The predict queue has a worker: its job runs to the end and never carried the note.
    with BrainMRIClient(trainless.base, trainless.key) as client:
        created = client.submit_predict(phantom_png("glioma", seed=1, size=64), filename="a.png")
        seen: list[object] = []
        done = client.wait(created["job_id"], lambda j: seen.append(j.get("waiting_reason")))
    assert done["status"] == "succeeded", done
    assert not any(seen)


def test_jobs_show_and_wait_print_the_reason(trainless: Stack, waiting_job: str) -> None:
    shown = cli(trainless, "jobs", "show", waiting_job)
    assert shown.returncode == 0, shown.stderr
    assert f"waiting: {REASON}" in shown.stdout

    waited = cli(trainless, "jobs", "wait", waiting_job, "--wait-timeout", "3")
    assert waited.returncode == 2, (waited.stdout, waited.stderr)  # gave up: wait_timeout
    assert "wait_timeout" in waited.stderr
    # Said once above the progress bar, not on every poll.
    assert waited.stderr.count(f"job {waiting_job} is queued: {REASON}") == 1


def test_the_job_view_shows_the_reason(browser, trainless: Stack, waiting_job: str) -> None:  # type: ignore[no-untyped-def]
    with signed_in_tab(browser, trainless) as tab:
        tab.goto(f"{trainless.base}/#/jobs/{waiting_job}")
        note = tab.locator("#job-status .waiting-reason")
        note.wait_for(timeout=30_000)
        assert REASON in note.inner_text()
        assert tab.locator("#job-status").get_attribute("data-status") == "queued"
        screenshot(tab, "job-waiting-for-a-worker.png")
