"""A small typed client for the brainmri HTTP API (research/triage only - not a medical device).

::

    from brainmri.client import BrainMRIClient

    with BrainMRIClient("http://127.0.0.1:8000", key) as client:
        job = client.wait(client.submit_predict("scan.png", tta=True)["job_id"])
        print(job["result"]["class_probs"], job["result"]["has_tumor"])

The client is what the remote CLI (``brainmri submit|jobs|models``) and scripts use; it speaks
only HTTP, so it works the same against embedded mode and a deployed stack. Every non-2xx
answer becomes a :class:`ClientError` carrying the API's own ``error.code`` and
``error.message``, so callers never parse prose. Return values are the API's JSON objects,
typed with ``TypedDict`` (they stay plain dicts, ready for ``json.dumps``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, NotRequired, TypedDict
from urllib.parse import quote

import httpx

from brainmri import __version__
from brainmri.errors import BrainMRIError

URL_ENV = "BRAINMRI_URL"
KEY_ENV = "BRAINMRI_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
BUSY_FALLBACK_SECONDS = 10.0  # a 429 without a usable Retry-After (a proxy's, say)

JobKind = Literal["predict", "evaluate", "train"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Upload = str | os.PathLike[str] | bytes | IO[bytes]


class JobLinks(TypedDict):
    self: str
    cancel: str
    artifacts: dict[str, str]


class JobCreated(TypedDict):
    job_id: str
    status: JobStatus
    links: JobLinks
    disclaimer: str


class Job(TypedDict):
    job_id: str
    kind: JobKind
    status: JobStatus
    progress: float
    progress_detail: dict[str, Any] | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    model_version: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    links: JobLinks
    disclaimer: str
    # Only on a single job's read, only while it is queued with no live worker for its queue;
    # servers older than the presence table never send it.
    waiting_reason: NotRequired[str | None]


class JobPage(TypedDict):
    items: list[Job]
    total: int
    limit: int
    offset: int


class Model(TypedDict):
    version: str
    name: str
    arch: str
    stage: Literal["candidate", "production", "archived"]
    metrics: dict[str, Any]
    # The listing's figures (brainmri_api.schemas.ModelPublic); servers before it omit it.
    headline: NotRequired[dict[str, Any]]
    data_fingerprint: str | None
    training_job_id: str | None
    stage_reason: str | None
    created_at: str
    promoted_at: str | None
    promoted_by: str | None
    versus_production: NotRequired[dict[str, Any] | None]


class ModelList(TypedDict):
    items: list[Model]
    production: str | None


class Me(TypedDict):
    key_id: str
    role: Literal["user", "admin"]


class ClientError(BrainMRIError):
    """The API refused a request (``status`` is the HTTP status; 0 when it was unreachable).

    ``code`` and ``message`` are the API's ``{"error": {"code", "message"}}``; being a
    :class:`~brainmri.errors.BrainMRIError`, the CLI prints it as ``error [code]: message``.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status
        self._message = message

    @property
    def message(self) -> str:
        """The API's own message, without the HTTP status that ``str()`` adds."""
        return self._message

    def __str__(self) -> str:
        return f"{self._message} (HTTP {self.status})" if self.status else self._message


class JobWaitTimeout(ClientError):
    """:meth:`BrainMRIClient.wait` gave up before the job finished (the job keeps running)."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(0, "wait_timeout", f"job {job_id} not finished after {timeout:g} s")
        self.job_id = job_id


def _error_from(response: httpx.Response) -> ClientError:
    """The API's error body as a ClientError; anything else (a proxy's HTML) by status line."""
    code, message = "http_error", f"{response.status_code} {response.reason_phrase}".strip()
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or code)
        message = str(body["error"].get("message") or message)
    elif response.text and not response.text.lstrip().startswith("<"):
        message = f"{message}: {response.text.strip()[:200]}"
    return ClientError(response.status_code, code, message)


def _retry_after(response: httpx.Response) -> float:
    """The server's ``Retry-After`` in seconds (a number; dates are not sent by this API),
    kept within 1..60 so a bad header can neither spin nor stall a client."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        seconds = BUSY_FALLBACK_SECONDS
    return min(max(seconds, 1.0), 60.0)


def _rewind(files: Mapping[str, tuple[str, bytes | IO[bytes]]] | None) -> bool:
    """Make an upload sendable again; False for a stream that cannot go back to its start."""
    for _, content in (files or {}).values():
        if isinstance(content, bytes):
            continue
        if not content.seekable():
            return False
        content.seek(0)
    return True


def _seg(value: str) -> str:
    """One URL path segment: an id or name typed by a user can never reach another route."""
    return quote(str(value), safe="")


def _upload_parts(upload: Upload, filename: str | None) -> tuple[str, bytes | IO[bytes]]:
    if isinstance(upload, bytes):
        return filename or "upload", upload
    if isinstance(upload, str | os.PathLike):
        path = Path(upload)
        return filename or path.name, path.read_bytes()
    return filename or Path(getattr(upload, "name", "upload")).name, upload


class BrainMRIClient:
    """Synchronous client for one server and one API key.

    ``url`` and ``key`` default to the ``BRAINMRI_URL`` and ``BRAINMRI_API_KEY`` environment
    variables (client-side settings; the server never reads them). Connection attempts are
    retried twice; requests themselves are not, since a submission is not idempotent - except
    a ``429`` (the key is at its active-job limit), which the server answers before storing
    anything: it is retried after the server's ``Retry-After`` for up to ``busy_wait`` seconds,
    calling ``on_busy(error, delay)`` before each wait (the CLI prints it). ``busy_wait=0``
    raises the 429 at once.
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
        busy_wait: float = 600.0,
        on_busy: Callable[[ClientError, float], None] | None = None,
    ) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        key = key if key is not None else os.environ.get(KEY_ENV)
        if not key:
            raise ClientError(
                0, "no_api_key", f"no API key: pass one or set {KEY_ENV} (see `brainmri serve`)"
            )
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}", "User-Agent": f"brainmri/{__version__}"},
            timeout=timeout,
            transport=transport or httpx.HTTPTransport(retries=2),
        )
        self.busy_wait = busy_wait
        self.on_busy = on_busy

    # --- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BrainMRIClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        give_up = time.monotonic() + self.busy_wait
        while True:
            response = self._send(method, path, **kwargs)
            if not response.is_error:
                return response
            error = _error_from(response)
            delay = _retry_after(response)
            if (
                response.status_code != 429
                or time.monotonic() + delay > give_up
                or not _rewind(kwargs.get("files"))
            ):
                raise error
            if self.on_busy is not None:
                self.on_busy(error, delay)
            time.sleep(delay)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ClientError(0, "timeout", f"{self.url} did not answer in time: {exc}") from exc
        except httpx.TransportError as exc:
            raise ClientError(0, "connection_error", f"cannot reach {self.url}: {exc}") from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # --- jobs ----------------------------------------------------------------------------------

    def me(self) -> Me:
        """The key's id and role."""
        return self._json("GET", "/v1/me")

    def submit_predict(
        self,
        upload: Upload,
        *,
        filename: str | None = None,
        tta: bool = False,
        cam: bool = True,
        threshold: float | None = None,
    ) -> JobCreated:
        """Upload one image, ``.dcm`` file or DICOM zip (a path, bytes or a binary file)."""
        name, content = _upload_parts(upload, filename)
        form: dict[str, str] = {"tta": str(tta).lower(), "cam": str(cam).lower()}
        if threshold is not None:
            form["threshold"] = str(threshold)
        return self._json("POST", "/v1/jobs/predict", files={"file": (name, content)}, data=form)

    def submit_evaluate(
        self,
        source: str,
        *,
        tta: bool = False,
        threshold: float | None = None,
        limit: int = 0,
    ) -> JobCreated:
        """Evaluate production on a server-side folder under an allowed root or an S3 prefix."""
        body = {"source": source, "tta": tta, "threshold": threshold, "limit": limit}
        return self._json("POST", "/v1/jobs/evaluate", json=body)

    def submit_train(self, dataset: str, **params: Any) -> JobCreated:
        """Train a candidate (admin). ``None`` params are left out so server defaults apply."""
        body = {"dataset": dataset, **{k: v for k, v in params.items() if v is not None}}
        return self._json("POST", "/v1/jobs/train", json=body)

    def get_job(self, job_id: str) -> Job:
        return self._json("GET", f"/v1/jobs/{_seg(job_id)}")

    def list_jobs(
        self,
        *,
        kind: JobKind | None = None,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if kind:
            params["kind"] = kind
        if status:
            params["status"] = status
        return self._json("GET", "/v1/jobs", params=params)

    def cancel_job(self, job_id: str) -> Job:
        """Queued jobs stop at once; running ones at their next check (poll to see it)."""
        return self._json("POST", f"/v1/jobs/{_seg(job_id)}/cancel")

    def retry_job(self, job_id: str) -> Job:
        """Queue again a job that failed with a retryable error (e.g. a storage outage)."""
        return self._json("POST", f"/v1/jobs/{_seg(job_id)}/retry")

    def wait(
        self,
        job_id: str,
        on_progress: Callable[[Job], None] | None = None,
        timeout: float | None = None,
        *,
        poll_interval: float = 0.25,
        max_interval: float = 2.0,
    ) -> Job:
        """Poll until the job has finished and return it, whatever its status (check it).

        ``on_progress`` sees every poll. Raises :class:`JobWaitTimeout` after ``timeout``
        seconds; the job itself keeps running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        while True:
            job = self.get_job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] in FINISHED_STATUSES:
                return job
            if deadline is not None and time.monotonic() + interval > deadline:
                raise JobWaitTimeout(job_id, timeout or 0.0)
            time.sleep(interval)
            interval = min(max_interval, interval * 1.5)

    def download_artifact(
        self, job_id: str, name: str, dest: str | os.PathLike[str] | None = None
    ) -> bytes:
        """An artifact's bytes (``cam.png``, ``eval_report.json``, ...); also written to
        ``dest`` when given."""
        data = self._request("GET", f"/v1/jobs/{_seg(job_id)}/artifacts/{_seg(name)}").content
        if dest is not None:
            Path(dest).write_bytes(data)
        return data

    # --- models --------------------------------------------------------------------------------

    def list_models(self) -> ModelList:
        return self._json("GET", "/v1/models")

    def get_model(self, version: str) -> Model:
        return self._json("GET", f"/v1/models/{_seg(version)}")

    def promote(self, version: str, reason: str | None = None) -> Model:
        """Make ``version`` production (admin)."""
        return self._json("POST", f"/v1/models/{_seg(version)}/promote", json={"reason": reason})

    def rollback(self, name: str) -> Model:
        """Return production of model ``name`` to its previous version (admin)."""
        return self._json("POST", f"/v1/models/{_seg(name)}/rollback")


def job_failed(job: Mapping[str, Any]) -> bool:
    """True for a finished job that did not succeed (failed or cancelled)."""
    return job.get("status") in FINISHED_STATUSES and job.get("status") != "succeeded"
