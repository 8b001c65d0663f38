"""Embedded mode with its train worker left out (``BRAINMRI_WORKER_QUEUES=predict,evaluate``),
as on a gateway host whose trainer is down, and a small per-key job limit.

* A job that no live worker can take says why it waits, wherever a user looks: the API, the
  CLI (``jobs show`` and ``--wait``) and the web page; predict jobs on the same stack still
  run and carry no such note.
* Train jobs that wait hold their key's places: ``brainmri submit`` then waits for a free
  place (429 + ``Retry-After``) instead of failing, and says so once."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brainmri.client import BrainMRIClient, ClientError
from brainmri.phantom import phantom_png, write_phantom_dataset
from tests.infra import EmbeddedServer, poll_readyz
from tests.web.conftest import Stack, cli, cli_command, cli_env, screenshot, signed_in_tab

pytestmark = pytest.mark.slow

REASON = "no live worker consumes the train queue"
LIMIT = 2  # the waiting train job holds one place; each test's own jobs fit in the other


@pytest.fixture(scope="module")
def trainless(platform_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("trainless-stack")
    allowed = base / "allowed"
    write_phantom_dataset(allowed / "train", per_class=2, size=64, seed=4)
    server = EmbeddedServer(
        base / "data",
        platform_bundle,
        allowed,
        worker_groups=("predict,evaluate",),
        extra_env={"BRAINMRI_MAX_ACTIVE_JOBS_PER_KEY": str(LIMIT)},
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


def test_submit_waits_for_a_free_place_instead_of_failing(
    trainless: Stack, waiting_job: str, tmp_path: Path
) -> None:
    image = tmp_path / "scan.png"
    image.write_bytes(phantom_png("pituitary", seed=2, size=64))
    with BrainMRIClient(trainless.base, trainless.key, busy_wait=0) as client:
        blocker = client.submit_train(str(trainless.allowed / "train"), epochs=1)["job_id"]
        with pytest.raises(ClientError) as refused:  # the key is at its limit now
            client.submit_predict(image)
        assert refused.value.status == 429 and refused.value.code == "too_many_active_jobs"

        stderr = tmp_path / "stderr.txt"
        with stderr.open("w") as err:
            submit = subprocess.Popen(
                cli_command("submit", "predict", str(image), "--wait", "--json"),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=cli_env(trainless),
            )
            deadline = time.monotonic() + 60
            while "server busy for this key" not in stderr.read_text():
                assert submit.poll() is None, stderr.read_text()
                assert time.monotonic() < deadline, stderr.read_text()
                time.sleep(0.2)
            client.cancel_job(blocker)  # a place frees; the CLI's next try is taken
            out, _ = submit.communicate(timeout=120)
    said = stderr.read_text()
    assert submit.returncode == 0, said
    assert json.loads(out)[0]["status"] == "succeeded"
    assert said.count("server busy for this key") == 1, said
    assert f"the limit is {LIMIT}" in said
