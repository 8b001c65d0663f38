"""Embedded mode: ``brainmri serve`` with no services - SQLite, a local folder, its own workers."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from brainmri.config import Settings
from brainmri.db.models import Worker
from brainmri.db.session import session_scope
from brainmri.phantom import phantom_png, write_phantom_dataset
from brainmri_api.server import embedded_api_key
from tests.infra import EMBEDDED_WORKER_QUEUES, EmbeddedServer, poll_readyz


@pytest.fixture(scope="module")
def server(
    platform_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedServer]:
    base = tmp_path_factory.mktemp("embedded")
    write_phantom_dataset(base / "allowed" / "eval", per_class=3, size=64, seed=2)
    write_phantom_dataset(base / "allowed" / "train", per_class=10, size=48, seed=4)
    running = EmbeddedServer(base / "data", platform_bundle, base / "allowed")
    yield running
    running.stop()


def test_serve_generates_and_keeps_a_key(server: EmbeddedServer, tmp_path: Path) -> None:
    key_file = Path(server.log).parent / "data" / "api_key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert server.log.read_text().count(server.key) == 1  # announced when it was made
    assert httpx.get(f"{server.base}/v1/jobs").status_code == 401
    assert httpx.get(f"{server.base}/v1/jobs", headers={"X-API-Key": server.key}).is_success
    # A later start reuses the key and names its file; the key stays out of the logs.
    key, announcement = embedded_api_key(Settings(data_dir=key_file.parent))
    assert key == server.key
    assert server.key not in announcement
    assert str(key_file) in announcement


def test_predict_and_evaluate_jobs_with_no_services(server: EmbeddedServer) -> None:
    headers = {"X-API-Key": server.key}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        created = client.post(
            "/v1/jobs/predict",
            files={"file": ("s.png", phantom_png("glioma", seed=3, size=80), "image/png")},
        ).json()
        evaluate = client.post(
            "/v1/jobs/evaluate", json={"source": str(Path(server.log).parent / "allowed" / "eval")}
        ).json()
        results = {}
        for job_id in (created["job_id"], evaluate["job_id"]):
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                body = client.get(f"/v1/jobs/{job_id}").json()
                if body["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.1)
            results[job_id] = body
        predict_job = results[created["job_id"]]
        assert predict_job["status"] == "succeeded", predict_job
        cam = client.get(predict_job["result"]["cam_url"])
        assert cam.status_code == 200 and cam.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert results[evaluate["job_id"]]["result"]["n_labeled"] == 12
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        # One command started workers for every queue; each reports itself alive.
        body = poll_readyz(client, lambda body: all(body["workers"].values()))
        assert set(body["workers"]) == {"predict", "evaluate", "train"}
        assert "warnings" not in body, body
    objects = Path(server.log).parent / "data" / "objects"
    assert (objects / "uploads" / created["job_id"] / "input.png").is_file()
    assert (objects / "artifacts" / created["job_id"] / "1" / "cam.png").is_file()  # attempt 1
    assert (Path(server.log).parent / "data" / "brainmri.db").is_file()


def _wait_status(
    client: httpx.Client, job_id: str, statuses: tuple[str, ...], timeout: float
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {statuses}: {body}")


def test_a_running_train_job_does_not_hold_up_predictions(server: EmbeddedServer) -> None:
    """Two workers: predict/evaluate in one, train in the other, so a train job (up to 48 h)
    never makes predictions wait behind it."""
    log = Path(server.log).read_text(errors="replace")
    for queues in EMBEDDED_WORKER_QUEUES:
        assert f"worker ready on queues {queues}" in log, log[-3000:]
    headers = {"X-API-Key": server.key}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        train = client.post(
            "/v1/jobs/train",
            json={
                "dataset": str(Path(server.log).parent / "allowed" / "train"),
                "recipe": "simple",
                "arch": "resnet18",
                "img_size": 32,
                "batch_size": 8,
                "epochs": 500,  # far longer than this test; it is cancelled at the end
                "val_frac": 0.2,
                "test_frac": 0.2,
            },
        )
        assert train.status_code == 202, train.text
        train_id = train.json()["job_id"]
        _wait_status(client, train_id, ("running",), timeout=120)
        predict = client.post(
            "/v1/jobs/predict",
            data={"cam": "false"},
            files={"file": ("s.png", phantom_png("glioma", seed=5, size=64), "image/png")},
        )
        assert predict.status_code == 202, predict.text
        predict_id = predict.json()["job_id"]
        done = _wait_status(client, predict_id, ("succeeded", "failed"), timeout=180)
        assert done["status"] == "succeeded", done
        assert client.get(f"/v1/jobs/{train_id}").json()["status"] == "running"
        assert client.post(f"/v1/jobs/{train_id}/cancel").status_code == 202
        ended = ("cancelled", "failed", "succeeded")
        cancelled = _wait_status(client, train_id, ended, timeout=120)
        assert cancelled["status"] == "cancelled", cancelled
    database = Path(server.log).parent / "data" / "brainmri.db"
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        workers = dict(
            connection.execute(
                "SELECT id, worker FROM jobs WHERE id IN (?, ?)", (train_id, predict_id)
            ).fetchall()
        )
    assert workers[train_id] and workers[predict_id]
    assert workers[train_id] != workers[predict_id]  # two worker processes, one per group


def _worker_pids(log: str) -> list[int]:
    """The embedded workers' process ids, from the line `serve` prints when it starts them."""
    line = next(text for text in log.splitlines() if text.startswith("embedded mode:"))
    return [int(pid) for pid in re.findall(r" pid (\d+)", line)]


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states in /proc")
def test_sigterm_stops_the_workers_before_serve_exits(
    platform_bundle: Path, tmp_path: Path
) -> None:
    """SIGTERM to `serve` alone (what docker stop and systemd send) must stop its workers itself.

    uvicorn re-sends the signal after its shutdown; with the default handler that ended `serve`
    before it stopped the workers, which only went later through die-with-parent (Linux only).
    Here the workers must be gone by the time `serve` has exited, and `serve` says so.
    """
    (tmp_path / "allowed").mkdir()
    running = EmbeddedServer(tmp_path / "data", platform_bundle, tmp_path / "allowed")
    try:
        pids = _worker_pids(running.log.read_text())
        assert len(pids) == len(EMBEDDED_WORKER_QUEUES)
        running.process.send_signal(signal.SIGTERM)
        code = running.process.wait(timeout=60)
        alive = [pid for pid in pids if _alive(pid)]
        log = running.log.read_text()
    finally:
        running.stop()
    assert code == 128 + signal.SIGTERM, log[-2000:]
    assert alive == [], log[-2000:]
    assert "embedded workers stopped" in log
    # Both said goodbye: a stopped stack lists no live worker, not even within the window.
    with session_scope(f"sqlite:///{tmp_path / 'data' / 'brainmri.db'}") as session:
        assert session.scalars(select(Worker.name)).all() == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states in /proc")
def test_a_worker_stopped_on_its_own_stops_serve(platform_bundle: Path, tmp_path: Path) -> None:
    """A plain ``kill`` of a worker is a warm shutdown that exits 0. `serve` used to take that
    for a requested stop and went on accepting jobs that nobody would run; now any exit it did
    not ask for stops it (status 1, saying which worker), and the other worker with it."""
    (tmp_path / "allowed").mkdir()
    running = EmbeddedServer(tmp_path / "data", platform_bundle, tmp_path / "allowed")
    try:
        predict_worker, train_worker = _worker_pids(running.log.read_text())
        os.kill(predict_worker, signal.SIGTERM)
        code = running.process.wait(timeout=60)
        log = running.log.read_text()
        other_alive = _alive(train_worker)
    finally:
        running.stop()
    assert code == 1, log[-2000:]
    assert "the embedded worker for predict,evaluate exited (status 0); stopping" in log
    assert not other_alive, log[-2000:]
