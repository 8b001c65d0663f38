"""Worker processes sharing one model cache fetch the same bundle at the same moment.

Before the fix ``fetch_bundle`` deleted the target folder and renamed its staging folder over
it without a lock, so a concurrent fetcher lost its files mid-load ("missing weights file") or
failed the rename ("Directory not empty") - and the job failed. Real spawned processes, a real
local object store and real bundle files; each round starts with an empty (or a damaged) cache.
"""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import Any

import pytest

from brainmri.db.models import ModelVersion
from brainmri.models.bundle import load_bundle, sha256_file
from brainmri.registry.cache import fetch_bundle
from brainmri.storage.local import LocalObjectStore
from tests.conftest import make_bundle

PROCESSES = 4
ROUNDS = 12
PREFIX = "models/brainmri/v1/"


def _row(digests: dict[str, str]) -> ModelVersion:
    return ModelVersion(version="v1", artifact_prefix=PREFIX, artifact_sha256=digests)


def _fetch_rounds(
    store_root: str, cache_base: str, digests: dict[str, str], barrier: Any, results: Any
) -> None:
    """One worker process: every round, fetch and load the bundle together with the others."""
    store = LocalObjectStore(Path(store_root))
    for round_index in range(ROUNDS):
        barrier.wait(timeout=120)
        try:
            path = fetch_bundle(_row(digests), store, Path(cache_base) / f"round-{round_index}")
            bundle = load_bundle(path)
            ok = all(sha256_file(path / name) == digest for name, digest in digests.items())
            results.put(("ok" if ok and bundle.metadata.arch else "unverified", round_index))
        except Exception:  # reported to the test, which shows the traceback
            results.put((traceback.format_exc(), round_index))


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cache-race") / "bundle"
    make_bundle(directory, arch="mobilenetv3_small_050", img_size=32)
    return directory


def test_concurrent_fetches_of_one_version_all_succeed(small_bundle: Path, tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    digests = {}
    for name in ("model.safetensors", "metadata.json"):
        store.put(PREFIX + name, (small_bundle / name).read_bytes())
        digests[name] = sha256_file(small_bundle / name)
    cache_base = tmp_path / "model-cache"
    for round_index in range(0, ROUNDS, 3):  # every third round starts from a damaged folder
        damaged = cache_base / f"round-{round_index}" / "v1"
        damaged.mkdir(parents=True)
        (damaged / "model.safetensors").write_bytes(b"truncated")

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [
        context.Process(
            target=_fetch_rounds,
            args=(str(store.root), str(cache_base), digests, barrier, results),
        )
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in range(PROCESSES * ROUNDS)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    failures = [outcome for outcome in outcomes if outcome[0] != "ok"]
    assert not failures, failures[0][0]
    for round_index in range(ROUNDS):
        folder = cache_base / f"round-{round_index}"
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["v1"]
        assert not [p for p in folder.iterdir() if p.name.startswith((".fetch-", ".stale-"))]
        load_bundle(folder / "v1")
