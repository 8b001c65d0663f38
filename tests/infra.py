"""Real infrastructure for platform, fault and web tests: a private Postgres database, Redis,
moto S3 server on loopback, worker processes and a private Redis for restart tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from brainmri.config import Settings
from brainmri.db.jobs import Claim, claim_job
from brainmri.db.migrate import upgrade
from brainmri.db.session import session_scope
from brainmri_api.main import create_app
from tests.conftest import make_bundle, need

PG_ADMIN = os.environ.get("BRAINMRI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("BRAINMRI_TEST_REDIS", "redis://127.0.0.1:6379")
FAST_JOB_SETTINGS = {
    "BRAINMRI_JOB_HEARTBEAT_SECONDS": "0.5",
    "BRAINMRI_JOB_STALE_AFTER_SECONDS": "3",
    "BRAINMRI_REAPER_INTERVAL_SECONDS": "1",
    "BRAINMRI_MODEL_CHECK_SECONDS": "0.5",
    "BRAINMRI_STORAGE_MAX_RETRIES": "2",
    "BRAINMRI_LOG_FORMAT": "text",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_available() -> bool:
    try:
        psycopg2.connect(PG_ADMIN, connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def claim_as(url: str, job_id: str, worker: str) -> Claim:
    """Claim ``job_id`` for ``worker`` as the task runtime does, taking it over when its
    heartbeat is more than five minutes old; the claim must succeed."""
    with session_scope(url) as session:
        claim = claim_job(
            session,
            job_id=job_id,
            worker=worker,
            stale_after=timedelta(minutes=5),
            max_attempts=3,
        )
        assert claim is not None, f"{worker} could not claim job {job_id}"
        return claim


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new database on the shared server, migrated to head, dropped on exit."""
    need(_pg_available(), f"PostgreSQL not reachable at {PG_ADMIN}")
    name = f"brainmri_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://")
    url = f"{base}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        from brainmri.db.session import get_engine

        get_engine(url).dispose()
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _sqlite_database(folder: Path) -> str:
    url = f"sqlite:///{folder / 'brainmri.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test once on a fresh SQLite file (embedded mode) and once on the session's
    PostgreSQL database, which other tests' rows share."""
    if request.param == "sqlite":
        return _sqlite_database(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def isolated_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """As ``any_database``, but PostgreSQL too is a database of this test's own: for tests
    that count rows which other tests' processes also write."""
    if request.param == "sqlite":
        yield _sqlite_database(tmp_path)
        return
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's database (its registry rows point at objects in ``service_bucket``)."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis database index of the shared server, emptied for this session."""
    try:
        client = redis_lib.Redis.from_url(f"{REDIS_BASE}/0", socket_connect_timeout=2)
        client.ping()
    except redis_lib.RedisError:
        need(False, f"Redis not reachable at {REDIS_BASE}")
    index = 11
    url = f"{REDIS_BASE}/{index}"
    redis_lib.Redis.from_url(url).flushdb()
    return url


class S3Server:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"{host}:{port}"

    def client(self):  # type: ignore[no-untyped-def]
        from minio import Minio

        return Minio(
            self.endpoint,
            access_key="test",
            secret_key="test-secret",
            secure=False,
            region="us-east-1",
        )

    def make_bucket(self, name: str) -> str:
        client = self.client()
        if not client.bucket_exists(name):
            client.make_bucket(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(
            o.object_name for o in self.client().list_objects(bucket, prefix=prefix, recursive=True)
        )

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service_bucket(s3: S3Server) -> str:
    """The one bucket of the session's deployment (it pairs with the session's database, as
    the model registry rows point at objects in it)."""
    return s3.make_bucket("brainmri")


@pytest.fixture(scope="session")
def platform_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("platform-bundle") / "model"
    make_bundle(directory, img_size=64, seed=1)
    return directory


def services_env(
    *,
    postgres_url: str,
    redis_url: str,
    s3: S3Server,
    bucket: str,
    data_dir: Path,
    bundle: Path,
    allowed_roots: str = "",
    api_keys: str = "",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment of a services-mode process (API or worker) for one test module."""
    env = {
        "BRAINMRI_DATABASE_URL": postgres_url,
        "BRAINMRI_BROKER_URL": redis_url,
        "BRAINMRI_OBJECT_STORE_URL": f"s3://{bucket}",
        "BRAINMRI_S3_ENDPOINT": s3.endpoint,
        "BRAINMRI_S3_ACCESS_KEY": "test",
        "BRAINMRI_S3_SECRET_KEY": "test-secret",
        "BRAINMRI_DATA_DIR": str(data_dir),
        "BRAINMRI_MODEL_DIR": str(bundle),
        "BRAINMRI_ALLOWED_ROOTS": allowed_roots,
        "BRAINMRI_API_KEYS": api_keys,
        "BRAINMRI_DECODE_WORKERS": "1",
        **FAST_JOB_SETTINGS,
        **(extra or {}),
    }
    return env


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings exactly as a process with ``env`` would read them."""
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


class WorkerProcess:
    """A real ``brainmri worker`` in its own process group, logging to a file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        queues: str = "predict,evaluate",
        pool: str = "prefork",
        name: str | None = None,
    ) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.queues = queues
        self.pool = pool
        self.name = name or f"w{uuid.uuid4().hex[:6]}@test"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0, *, wait: bool = True) -> WorkerProcess:
        """Launch the worker; with ``wait`` return once it consumes its queues."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "brainmri.cli.main",
                "worker",
                "--queues",
                self.queues,
                "--pool",
                self.pool,
                "--name",
                self.name,
            ],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait:
            return self
        deadline = time.monotonic() + timeout
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            text = self.log_path.read_bytes()[max(0, offset - 20000) :].decode(errors="replace")
            if "worker ready on queues" in text and " ready." in text:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main and pool processes): a crash, not a shutdown."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()


class PrivateRedis:
    """A redis-server on its own port with AOF persistence, for restart tests."""

    def __init__(self, directory: Path, *, appendonly: bool = True) -> None:
        self.binary = shutil.which("redis-server")
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        assert self.binary
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
        ]
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis_lib.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    need(shutil.which("redis-server") is not None, "redis-server binary not installed")
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def poll_readyz(
    client: httpx.Client | TestClient,
    condition: Callable[[dict[str, Any]], object],
    timeout: float = 15.0,
) -> dict[str, Any]:
    """``/readyz``'s body once ``condition`` holds for it: worker reports come once per reaper
    interval, so one loaded moment must not fail a test."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get("/readyz").json()
        if "workers" in body and condition(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz never met the condition: {body}")
        time.sleep(0.2)


def wait_for_job(
    client,
    job_id: str,
    headers: dict[str, str],
    *,
    timeout: float = 120.0,
    until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if body.get("status") in until:
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach {until}: {body}")


EMBEDDED_WORKER_QUEUES = ("predict,evaluate", "train")


class EmbeddedServer:
    """`brainmri serve` in embedded mode as a real subprocess; ``key`` is the printed API key."""

    def __init__(
        self,
        data_dir: Path,
        bundle: Path,
        allowed: Path,
        worker_groups: tuple[str, ...] = EMBEDDED_WORKER_QUEUES,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """``worker_groups`` narrows the queues served (``BRAINMRI_WORKER_QUEUES``): one
        group of the default ``EMBEDDED_WORKER_QUEUES`` leaves the other's queues unserved.
        ``extra_env`` adds settings of the test's own."""
        self.port = free_port()
        self.worker_groups = worker_groups
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / "serve.log"
        self.data_dir = data_dir
        env = {key: value for key, value in os.environ.items() if not key.startswith("BRAINMRI_")}
        env.update(FAST_JOB_SETTINGS)
        env.update(
            {
                "BRAINMRI_DATA_DIR": str(data_dir),
                "BRAINMRI_MODEL_DIR": str(bundle),
                "BRAINMRI_ALLOWED_ROOTS": str(allowed),
                "BRAINMRI_WORKER_QUEUES": ",".join(worker_groups),
                "PYTHONUNBUFFERED": "1",
                **(extra_env or {}),
            }
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "brainmri.cli.main", "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.key = self._wait()

    def _wait(self) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            announced = "API key (admin" in text  # printed once the key file exists
            # Embedded mode starts two workers; both consume before the server counts as up.
            workers_ready = all(
                f"worker ready on queues {queues}" in text for queues in self.worker_groups
            )
            if announced and workers_ready:
                try:
                    if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                        return (self.data_dir / "api_key").read_text().strip()
                except httpx.HTTPError:
                    pass
            if self.process.poll() is not None:
                raise RuntimeError(text[-3000:])
            time.sleep(0.25)
        raise RuntimeError(self.log.read_text()[-3000:])

    def stop(self) -> None:
        """SIGTERM the whole process group, then make sure nothing of it survives."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # a lingering worker child, if any


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on its own port (for outage tests; never the shared one).

    initdb refuses to run as root, so as root the cluster is created and run as ``postgres``.
    """

    def __init__(self) -> None:
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        self.bin = binaries[-1].parent if binaries else None
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="brainmri-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"

    @property
    def available(self) -> bool:
        return self.bin is not None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> PrivatePostgres:
        assert self.bin is not None
        self.root.chmod(0o755)
        self.socket_dir.mkdir()
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        return self.start()

    def start(self) -> PrivatePostgres:
        assert self.bin is not None
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )
        return self

    def stop(self) -> None:
        assert self.bin is not None
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def queued_only_api(
    base: Path, api_keys: str, **overrides: object
) -> tuple[TestClient, Settings, Path]:
    """The API in embedded mode (SQLite, local store) with no worker: accepted jobs stay
    queued, which is all a test of what the API accepts and stores needs. Returns the client,
    its settings and an empty class folder under the one allowed root."""
    make_bundle(base / "bundle", img_size=48)
    dataset = base / "allowed" / "data"
    (dataset / "glioma").mkdir(parents=True)
    settings = Settings(
        data_dir=base / "data",
        model_dir=base / "bundle",
        api_keys=api_keys,
        allowed_roots=str(base / "allowed"),
        **overrides,
    )
    upgrade(settings.resolved_database_url)
    return TestClient(create_app(settings)), settings, dataset
