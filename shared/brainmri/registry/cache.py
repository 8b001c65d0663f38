"""Fetching registered bundles and keeping each worker on the production version.

A worker asks :meth:`ProductionModel.engine` at the start of every job. At most every
``model_check_seconds`` that costs one indexed query; when the production version changed, the
new bundle is downloaded, its files are verified against the sha256 digests recorded in the
registry, and a new engine replaces the old one. Jobs already running keep the engine object
they started with, so they finish on the version that began them. A bundle that fails
verification is refused with a clear log line and the previous engine stays in service.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from brainmri.config import Settings
from brainmri.db.models import ModelVersion
from brainmri.db.session import session_scope
from brainmri.errors import ModelBundleError
from brainmri.imaging.sandbox import DecodeSandbox
from brainmri.inference.engine import InferenceEngine
from brainmri.inference.loader import engine_for_bundle
from brainmri.models.bundle import load_bundle, sha256_file
from brainmri.registry.versions import ensure_production_model, production_version_id
from brainmri.storage import ObjectStore, open_store

log = logging.getLogger(__name__)


def fetch_bundle(row: ModelVersion, store: ObjectStore, cache_root: Path) -> Path:
    """Download a registered bundle into ``cache_root/<version>`` and verify every file.

    Several worker processes (and threads) share one cache, so the download runs under an
    exclusive ``flock`` per version: the first fetcher downloads, the others wait and then find
    a verified folder. A verified folder is never deleted or replaced - a job that already
    returned its path may be loading from it - only a folder that fails verification is moved
    aside. Files are staged in a unique folder of the same file system and renamed into place,
    so ``cache_root/<version>`` is always either absent or complete.
    """
    target = cache_root / row.version
    if target.is_dir() and _verified(target, row.artifact_sha256):
        return target
    if not row.artifact_prefix.startswith("models/"):
        raise ModelBundleError(f"{row.version}: artifacts outside the registry prefix are refused")
    cache_root.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache_root / f".{row.version}.lock"):
        if target.is_dir() and _verified(target, row.artifact_sha256):
            return target  # another process fetched it while this one waited
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache_root))
        try:
            for filename in row.artifact_sha256:
                (staging / filename).write_bytes(store.get(row.artifact_prefix + filename))
            if not _verified(staging, row.artifact_sha256):
                raise ModelBundleError(
                    f"model {row.version} failed its integrity check: stored files do not match "
                    "the sha256 digests recorded at registration; refusing to load it",
                    code="bundle_integrity",
                )
            if target.exists():  # damaged (it failed verification above): move it aside first
                stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=cache_root))
                target.rename(stale / "bundle")
                shutil.rmtree(stale, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An inter-process lock (also between threads: each call opens its own descriptor).

    The lock file is left in place on purpose: deleting it would let a waiter and a newcomer
    lock two different files.
    """
    with lock_path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _verified(folder: Path, digests: dict[str, str]) -> bool:
    return bool(digests) and all(
        (folder / name).is_file() and sha256_file(folder / name) == digest
        for name, digest in digests.items()
    )


class ProductionModel:
    """Per-process holder of the engine for the current production version."""

    def __init__(
        self,
        settings: Settings,
        engine_factory: Callable[[Path], InferenceEngine] | None = None,
        *,
        sandbox: DecodeSandbox | None = None,
    ) -> None:
        """``sandbox``: where each engine decodes its inputs (it outlives model changes)."""
        self.settings = settings
        self._engine: InferenceEngine | None = None
        self._version: str | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._factory = engine_factory or (
            lambda path: engine_for_bundle(settings, load_bundle(path), sandbox=sandbox)
        )
        self._store: ObjectStore | None = None

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    def engine(self) -> InferenceEngine:
        with self._lock:
            now = time.monotonic()
            if self._engine is None or now - self._checked >= self.settings.model_check_seconds:
                self._checked = now
                self._refresh()
            assert self._engine is not None
            return self._engine

    def _refresh(self) -> None:
        url = self.settings.resolved_database_url
        with session_scope(url) as session:
            version = production_version_id(session, self.settings.model_name)
            if version is None:
                made = ensure_production_model(
                    session,
                    self.store,
                    name=self.settings.model_name,
                    default_bundle=self.settings.resolved_model_dir,
                )
                version = made.version
            if version == self._version and self._engine is not None:
                return
            row = session.get(ModelVersion, version)
            assert row is not None
            session.expunge(row)
        try:
            path = fetch_bundle(row, self.store, self.settings.data_dir / "model-cache")
            engine = self._factory(path)
        except ModelBundleError as exc:
            if self._engine is None:
                raise
            log.error("keeping model %s in service: %s", self._version, exc)
            return
        log.info("now serving model %s (was %s)", version, self._version)
        self._engine, self._version = engine, version
