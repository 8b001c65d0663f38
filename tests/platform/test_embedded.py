"""Embedded mode: ``brainmri serve`` with no services - SQLite, a local folder, its own worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brainmri.phantom import phantom_png, write_phantom_dataset
from tests.infra import EmbeddedServer


@pytest.fixture(scope="module")
def server(
    platform_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedServer]:
    base = tmp_path_factory.mktemp("embedded")
    write_phantom_dataset(base / "allowed" / "eval", per_class=3, size=64, seed=2)
    running = EmbeddedServer(base / "data", platform_bundle, base / "allowed")
    yield running
    running.stop()


def test_serve_generates_and_keeps_a_key(server: EmbeddedServer, tmp_path: Path) -> None:
    key_file = Path(server.log).parent / "data" / "api_key"
    assert key_file.read_text().strip() == server.key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert httpx.get(f"{server.base}/v1/jobs").status_code == 401


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
    objects = Path(server.log).parent / "data" / "objects"
    assert (objects / "uploads" / created["job_id"] / "input.png").is_file()
    assert (objects / "artifacts" / created["job_id"] / "cam.png").is_file()
    assert (Path(server.log).parent / "data" / "brainmri.db").is_file()
