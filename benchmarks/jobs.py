"""End-to-end predict-job latency and throughput, services mode and embedded mode.

For each mode this starts the real stack (services: uvicorn API + Postgres + Redis + moto S3 +
one worker process; embedded: ``brainmri serve``), then measures from the client's side:

* submit -> ``succeeded`` latency, p50/p95, with the Grad-CAM on and off (sequential jobs);
* the platform's own overhead: client latency minus the worker's compute time
  (``finished_at - started_at``), and the queue wait (``started_at - created_at``);
* throughput with 1, 8 and 32 concurrent clients;

and compares with a direct library call (decode + predict [+ CAM]) on the same image.

    python -m benchmarks.jobs --jobs 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import psycopg2
import redis

from brainmri.db.migrate import upgrade
from brainmri.inference.engine import InferenceEngine
from brainmri.models.bundle import load_bundle
from brainmri.phantom import phantom_png
from tests.conftest import make_bundle
from tests.infra import (
    FAST_JOB_SETTINGS,
    PG_ADMIN,
    REDIS_BASE,
    EmbeddedServer,
    S3Server,
    WorkerProcess,
    free_port,
)

KEY = "bench-key-0123456789abcdef"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def services_stack(bundle: Path, work: Path) -> Iterator[str]:
    work.mkdir(parents=True, exist_ok=True)
    broker = f"{REDIS_BASE}/13"
    redis.Redis.from_url(broker).flushdb()  # a private, empty broker database
    name = f"brainmri_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + "/" + name
    upgrade(url)
    s3 = S3Server()
    s3.make_bucket("brainmri")
    port = free_port()
    env = {
        **os.environ,
        **FAST_JOB_SETTINGS,
        "BRAINMRI_DATABASE_URL": url,
        "BRAINMRI_BROKER_URL": broker,
        "BRAINMRI_OBJECT_STORE_URL": "s3://brainmri",
        "BRAINMRI_S3_ENDPOINT": s3.endpoint,
        "BRAINMRI_S3_ACCESS_KEY": "bench",
        "BRAINMRI_S3_SECRET_KEY": "bench-secret",
        "BRAINMRI_DATA_DIR": str(work / "data"),
        "BRAINMRI_MODEL_DIR": str(bundle),
        "BRAINMRI_API_KEYS": f"{KEY}:admin",
        "BRAINMRI_JOB_HEARTBEAT_SECONDS": "5",
    }
    worker = WorkerProcess(env, work / "worker.log").start()
    api = subprocess.Popen(
        [sys.executable, "-m", "brainmri.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=(work / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        yield base
    finally:
        api.terminate()
        api.wait(timeout=20)
        worker.stop()
        s3.stop()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def run_job(client: httpx.Client, image: bytes, cam: bool, timeout: float = 120.0) -> dict:
    started = time.perf_counter()
    created = client.post(
        "/v1/jobs/predict",
        files={"file": ("a.png", image, "image/png")},
        data={"cam": str(cam).lower()},
    ).json()
    while True:
        job = client.get(f"/v1/jobs/{created['job_id']}").json()
        if job["status"] in ("succeeded", "failed"):
            break
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"job {created['job_id']} still {job['status']} after {timeout}s")
        time.sleep(0.003)
    job["client_ms"] = (time.perf_counter() - started) * 1000.0
    return job


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def latency(base: str, image: bytes, cam: bool, n: int) -> dict[str, float]:
    with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as client:
        for _ in range(3):
            run_job(client, image, cam)  # warm-up (model load, connections)
        jobs = [run_job(client, image, cam) for _ in range(n)]
    totals = [job["client_ms"] for job in jobs]
    compute = [(_ts(j["finished_at"]) - _ts(j["started_at"])).total_seconds() * 1000 for j in jobs]
    queue = [(_ts(j["started_at"]) - _ts(j["created_at"])).total_seconds() * 1000 for j in jobs]
    overhead = [t - c for t, c in zip(totals, compute, strict=True)]
    return {
        "p50_ms": percentile(totals, 0.5),
        "p95_ms": percentile(totals, 0.95),
        "worker_compute_p50_ms": percentile(compute, 0.5),
        "queue_wait_p50_ms": percentile(queue, 0.5),
        "overhead_p50_ms": percentile(overhead, 0.5),
        "overhead_p95_ms": percentile(overhead, 0.95),
    }


def throughput(base: str, image: bytes, clients: int, jobs_per_client: int) -> float:
    def client_loop(_: int) -> int:
        with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=300) as client:
            for _ in range(jobs_per_client):
                run_job(client, image, cam=False)
        return jobs_per_client

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        total = sum(pool.map(client_loop, range(clients)))
    return total / (time.perf_counter() - started)


def direct_call_ms(bundle: Path, image: bytes, cam: bool, n: int) -> float:
    engine = InferenceEngine(load_bundle(bundle), device="cpu")
    for _ in range(3):
        prepared = engine.prepare_bytes(image)
        engine.predict_prepared([prepared])
    times = []
    for _ in range(n):
        started = time.perf_counter()
        prepared = engine.prepare_bytes(image)
        engine.predict_prepared([prepared])
        if cam:
            engine.explain(prepared)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="sequential jobs per latency run")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels for throughput")
    parser.add_argument(
        "--throughput-jobs",
        type=int,
        default=32,
        help="jobs per concurrency level (split across its clients)",
    )
    parser.add_argument("--model", type=Path, default=None, help="bundle (default: resnet18@224)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    image = phantom_png("glioma", seed=1, size=512)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = args.model
        if bundle is None:
            bundle = work / "bundle"
            make_bundle(bundle, arch="resnet18", img_size=224)
        results["direct_ms"] = {
            "cam_off": direct_call_ms(bundle, image, False, 20),
            "cam_on": direct_call_ms(bundle, image, True, 20),
        }
        with services_stack(bundle, work / "services") as base:
            results["services"] = _measure(base, image, args)
        allowed = work / "allowed"
        allowed.mkdir()
        (work / "embedded").mkdir()  # the server's log goes beside its data folder
        embedded = EmbeddedServer(work / "embedded" / "data", bundle, allowed)
        try:
            global KEY
            KEY = embedded.key
            results["embedded"] = _measure(embedded.base, image, args)
        finally:
            embedded.stop()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    results["machine"] = machine
    print(json.dumps(results, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "jobs.json").write_text(json.dumps(results, indent=2))


def _measure(base: str, image: bytes, args: argparse.Namespace) -> dict[str, object]:
    print(f"measuring {base} ...", file=sys.stderr, flush=True)
    levels = [int(c) for c in args.clients.split(",")]
    return {
        "cam_off": latency(base, image, cam=False, n=args.jobs),
        "cam_on": latency(base, image, cam=True, n=args.jobs),
        "throughput_jobs_per_s": {
            clients: throughput(base, image, clients, max(1, args.throughput_jobs // clients))
            for clients in levels
        },
    }


if __name__ == "__main__":
    main()
