"""``brainmri.client`` in-process: against the embedded stack, and its error mapping for
answers a real deployment can produce (a proxy's HTML page, an unreachable host)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from brainmri.client import BrainMRIClient, ClientError, JobWaitTimeout, job_failed
from brainmri.phantom import phantom_png
from tests.web.conftest import Stack

pytestmark = pytest.mark.slow


def test_predict_round_trip_with_progress_and_artifacts(stack: Stack, tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    with BrainMRIClient(stack.base, stack.key) as client:
        assert client.me()["role"] == "admin"
        created = client.submit_predict(
            phantom_png("glioma", seed=31, size=64), filename="g.png", threshold=0.9
        )
        job = client.wait(created["job_id"], lambda j: seen.append((j["status"], j["progress"])))
        assert job["status"] == "succeeded" and not job_failed(job)
        assert job["result"]["threshold"] == 0.9
        assert seen[-1] == ("succeeded", 1.0)
        assert [p for _, p in seen] == sorted(p for _, p in seen)  # progress never goes back
        cam = client.download_artifact(job["job_id"], "cam.png", tmp_path / "cam.png")
        assert cam[:4] == b"\x89PNG" and (tmp_path / "cam.png").read_bytes() == cam
        page = client.list_jobs(kind="predict", status="succeeded", limit=200)
        assert job["job_id"] in [item["job_id"] for item in page["items"]]

        with pytest.raises(ClientError) as conflict:
            client.cancel_job(job["job_id"])
        assert (conflict.value.status, conflict.value.code) == (409, "conflict")
        with pytest.raises(ClientError) as missing:
            client.download_artifact(job["job_id"], "../../api_key")
        assert missing.value.status == 404
        with pytest.raises(ClientError) as no_job:
            client.get_job("no-such-job")
        assert no_job.value.status == 404 and "no job" in str(no_job.value)


def test_wait_timeout_leaves_the_job_running(stack: Stack) -> None:
    with BrainMRIClient(stack.base, stack.key) as client:
        created = client.submit_evaluate(str(stack.eval_folder), tta=True)
        with pytest.raises(JobWaitTimeout) as timed_out:
            client.wait(created["job_id"], timeout=0.01)
        assert timed_out.value.job_id == created["job_id"]
        assert client.wait(created["job_id"], timeout=120)["status"] == "succeeded"


def test_model_registry_calls(stack: Stack) -> None:
    with BrainMRIClient(stack.base, stack.key) as client:
        models = client.list_models()
        production = models["production"]
        assert production is not None
        assert client.get_model(production)["stage"] == "production"
        with pytest.raises(ClientError) as refused:
            client.rollback("brainmri")
        assert refused.value.status == 404


def _client_answering(status: int, body: bytes, content_type: str) -> BrainMRIClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": content_type})

    return BrainMRIClient("http://api.test", "k" * 20, transport=httpx.MockTransport(handler))


def test_error_bodies_become_client_errors() -> None:
    api = _client_answering(
        415, b'{"error": {"code": "unsupported_format", "message": "nope"}}', "application/json"
    )
    with pytest.raises(ClientError) as api_error:
        api.submit_predict(b"text", filename="a.txt")
    assert (api_error.value.status, api_error.value.code, api_error.value.message) == (
        415,
        "unsupported_format",
        "nope",
    )
    proxy = _client_answering(502, b"<html><body>Bad Gateway</body></html>", "text/html")
    with pytest.raises(ClientError) as proxy_error:
        proxy.list_jobs()
    assert proxy_error.value.code == "http_error"
    assert str(proxy_error.value) == "502 Bad Gateway (HTTP 502)"


def test_missing_key_and_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAINMRI_API_KEY", raising=False)
    with pytest.raises(ClientError, match="BRAINMRI_API_KEY"):
        BrainMRIClient("http://127.0.0.1:9")
    with (
        BrainMRIClient("http://127.0.0.1:9", "k" * 20, timeout=2) as client,
        pytest.raises(ClientError) as unreachable,
    ):
        client.list_models()
    assert unreachable.value.status == 0 and unreachable.value.code == "connection_error"
