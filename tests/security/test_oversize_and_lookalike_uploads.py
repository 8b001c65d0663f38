"""Oversize bodies get 413 however they are sent (declared ``Content-Length`` or chunked), with
the configured limit in the message; text that merely starts like a BMP or TIFF gets the
unsupported-format answer or a clean message. Nothing is stored for any of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from brainmri.config import Settings
from brainmri.db.migrate import upgrade
from brainmri.db.models import Job
from brainmri.db.session import session_scope
from brainmri_api.main import create_app
from tests.conftest import make_bundle
from tests.infra import free_port

KEY = "oversize-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}
LIMIT = 100_000
BOUNDARY = "oversizeBoundary"
MULTIPART = {**HEADERS, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
PATHS = ["/v1/jobs/predict", "/predict"]


@dataclass
class Api:
    client: TestClient
    settings: Settings

    def state(self) -> tuple[list[str], int, int]:
        """Stored uploads, job rows and queued broker messages."""
        root = self.settings.data_dir / "objects" / "uploads"
        objects = sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []
        with session_scope(self.settings.resolved_database_url) as session:
            jobs = int(session.scalar(select(func.count()).select_from(Job)) or 0)
        queue = self.settings.broker_spool_dir / "queue"
        messages = len(list(queue.iterdir())) if queue.exists() else 0
        return objects, jobs, messages


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    base = tmp_path_factory.mktemp("oversize")
    make_bundle(base / "bundle", img_size=48)
    settings = Settings(
        data_dir=base / "data",
        model_dir=base / "bundle",
        api_keys=f"{KEY}:user",
        max_upload_bytes=LIMIT,
        upload_sandbox_processes=1,
        legacy_wait_seconds=0.5,
    )
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        yield Api(client, settings)


def multipart_chunks(file_bytes: int, chunk: int = 16384) -> Iterator[bytes]:
    """One file part of ``file_bytes`` zero bytes, streamed in chunks (no Content-Length)."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    for start in range(0, file_bytes, chunk):
        yield b"\0" * min(chunk, file_bytes - start)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def assert_is_413_with_the_limit(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert f"upload limit of {LIMIT} bytes" in error["message"]
    assert str(LIMIT + 64 * 1024) not in error["message"]


@pytest.mark.parametrize("path", PATHS)
def test_chunked_oversize_upload_is_413_and_stores_nothing(api: Api, path: str) -> None:
    before = api.state()
    response = api.client.post(path, headers=MULTIPART, content=multipart_chunks(4 * LIMIT))
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_is_413_with_the_limit(response)
    assert api.state() == before


@pytest.mark.parametrize("path", PATHS)
def test_declared_oversize_upload_is_413_and_stores_nothing(api: Api, path: str) -> None:
    before = api.state()
    body = b"".join(multipart_chunks(4 * LIMIT))
    response = api.client.post(path, headers=MULTIPART, content=body)
    assert response.request.headers["content-length"] == str(len(body))
    assert_is_413_with_the_limit(response)
    assert api.state() == before


def test_a_file_just_over_the_limit_is_the_upload_check_413(api: Api) -> None:
    """Inside the multipart allowance the route's own check answers, with the same limit."""
    before = api.state()
    response = api.client.post(
        "/v1/jobs/predict", headers=MULTIPART, content=multipart_chunks(LIMIT + 10)
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == {
        "code": "file_too_large",
        "message": f"the upload exceeds {LIMIT} bytes",
    }
    assert api.state() == before


def test_chunked_upload_within_the_limit_is_still_parsed(api: Api) -> None:
    """Not a blanket 413: a small chunked body reaches the decoder (zeros are no image)."""
    response = api.client.post(
        "/v1/jobs/predict", headers=MULTIPART, content=multipart_chunks(1000)
    )
    assert response.status_code == 415, response.text


@pytest.fixture(scope="module")
def server(api: Api) -> Iterator[str]:
    """The same app behind a real uvicorn on loopback, for a real chunked HTTP/1.1 upload."""
    port = free_port()
    config = uvicorn.Config(
        create_app(api.settings), host="127.0.0.1", port=port, log_level="warning"
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=30)


@pytest.mark.parametrize("path", PATHS)
def test_chunked_oversize_upload_over_real_http_is_413(api: Api, server: str, path: str) -> None:
    before = api.state()
    response = httpx.post(
        f"{server}{path}", headers=MULTIPART, content=multipart_chunks(20 * LIMIT), timeout=60
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_is_413_with_the_limit(response)
    assert api.state() == before


# --- look-alikes ------------------------------------------------------------------------------
def test_text_starting_with_bm_is_415_not_a_truncated_bmp(api: Api) -> None:
    before = api.state()
    response = api.client.post(
        "/v1/jobs/predict",
        headers=HEADERS,
        files={"file": ("report.bmp", b"BMW service report: all fine.\n" * 20, "image/bmp")},
    )
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_format"
    assert api.state() == before


def test_undecodable_tiff_answer_has_no_object_repr(api: Api) -> None:
    before = api.state()
    response = api.client.post(
        "/v1/jobs/predict",
        headers=HEADERS,
        files={"file": ("x.tif", b"II*\x00" + b"not really a tiff at all. " * 20, "image/tiff")},
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "object at" not in message and "0x" not in message
    assert api.state() == before
