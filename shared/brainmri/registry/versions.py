"""Registering, promoting and rolling back model versions.

Bundle files live in the service's object store under ``models/<name>/<version>/`` and their
sha256 digests are recorded in the ``model_versions`` row when registered; workers verify
them before loading. Exactly one ``production`` row per model name is enforced by a partial
unique index, and promotions and rollbacks of one model are serialised by locking all of that
model's rows first, so racing promotions run one after the other instead of colliding.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brainmri.db.locks import take_write_lock
from brainmri.db.models import ModelStage, ModelVersion
from brainmri.db.types import database_now
from brainmri.errors import BrainMRIError
from brainmri.models.bundle import METADATA_FILE, read_metadata, sha256_file
from brainmri.storage import ObjectStore

log = logging.getLogger(__name__)
MODELS_PREFIX = "models"


class RegistryConflictError(BrainMRIError):
    code = "registry_conflict"


class ModelVersionNotFoundError(BrainMRIError):
    code = "model_version_not_found"


def bundle_prefix(name: str, version: str) -> str:
    return f"{MODELS_PREFIX}/{name}/{version}/"


def bundle_prefix_of(key: str) -> str | None:
    """The bundle folder (:func:`bundle_prefix`) that holds the stored object ``key``, or None
    for a key that is not inside one. As for uploads (:func:`brainmri.jobs.artifacts.
    upload_owner`), every key the folder's deletion would remove counts."""
    parts = key.split("/", 3)
    if len(parts) < 4 or parts[0] != MODELS_PREFIX or not all(parts[1:3]):
        return None
    return bundle_prefix(parts[1], parts[2])


def register_bundle(
    session: Session,
    store: ObjectStore,
    bundle_dir: Path,
    *,
    name: str,
    stage: ModelStage = ModelStage.CANDIDATE,
    training_job_id: str | None = None,
    reason: str | None = None,
    metrics: dict[str, Any] | None = None,
    by: str | None = None,
) -> ModelVersion:
    """Upload a bundle folder and record it; the row is added only after every file is stored."""
    metadata = read_metadata(bundle_dir)
    if not metadata.version:
        raise BrainMRIError(f"{bundle_dir} has no version in its metadata")
    existing = session.get(ModelVersion, metadata.version)
    if existing is not None:
        return existing
    prefix = bundle_prefix(name, metadata.version)
    digests: dict[str, str] = {}
    for filename in (metadata.weights_file, METADATA_FILE):
        path = Path(bundle_dir) / filename
        digests[filename] = sha256_file(path)
        store.put(
            prefix + filename,
            path.read_bytes(),
            "application/json" if filename.endswith(".json") else "application/octet-stream",
        )
    row = ModelVersion(
        version=metadata.version,
        name=name,
        arch=metadata.arch,
        stage=ModelStage.CANDIDATE,
        metrics=metrics if metrics is not None else metadata.metrics,
        data_fingerprint=metadata.data_fingerprint,
        training_job_id=training_job_id,
        artifact_prefix=prefix,
        artifact_sha256=digests,
        stage_reason=reason,
        created_at=database_now(session),
    )
    session.add(row)
    session.flush()
    if stage == ModelStage.PRODUCTION:
        promote(session, version=row.version, by=by or "system", reason=reason)
    return row


def version_trained_by(session: Session, job_id: str) -> ModelVersion | None:
    """The version a train job registered, if it got that far."""
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.training_job_id == job_id)
        .order_by(ModelVersion.created_at)
    ).first()


def registered_prefixes(session: Session) -> set[str]:
    """The store folders of every registered version, whatever its stage."""
    return set(session.scalars(select(ModelVersion.artifact_prefix)))


def production(session: Session, name: str) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(
            ModelVersion.name == name, ModelVersion.stage == ModelStage.PRODUCTION
        )
    ).first()


def production_version_id(session: Session, name: str) -> str | None:
    """The cheap check workers run to follow promotions."""
    return session.scalar(
        select(ModelVersion.version).where(
            ModelVersion.name == name, ModelVersion.stage == ModelStage.PRODUCTION
        )
    )


def get_version(session: Session, version: str) -> ModelVersion:
    row = session.get(ModelVersion, version)
    if row is None:
        raise ModelVersionNotFoundError(f"no model version {version!r}")
    return row


def list_versions(session: Session, name: str | None = None) -> list[ModelVersion]:
    query = select(ModelVersion).order_by(ModelVersion.created_at.desc())
    if name:
        query = query.where(ModelVersion.name == name)
    return list(session.scalars(query).all())


def _lock_model_rows(session: Session, name: str) -> list[ModelVersion]:
    """Lock every version row of model ``name`` (up to commit), always in primary-key order.

    Locking only the current production row is not enough: once the winner of a race commits,
    the loser's ``FOR UPDATE`` finds no production row any more, and two such losers both
    write the one-production unique index and can deadlock each other (seen in CI). Taking all
    of the model's rows in one fixed order serialises its promotions with no lock cycle.
    ``populate_existing`` refreshes rows this session had already loaded before the lock; the
    flush first writes the caller's pending changes, which that refresh would otherwise drop.
    On SQLite, which has no row locks, the database's single writer does the serialising.
    """
    session.flush()
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.name == name)
            .order_by(ModelVersion.version)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
    )


def _production_among(rows: list[ModelVersion]) -> ModelVersion | None:
    return next((row for row in rows if row.stage == ModelStage.PRODUCTION), None)


class ProductionChangedError(RegistryConflictError):
    """Production is no longer the version the caller compared against (nothing was changed)."""

    code = "production_changed"

    def __init__(self, expected: str, actual: str | None) -> None:
        super().__init__(f"production changed from {expected} to {actual or 'none'}")
        self.expected = expected
        self.actual = actual


def promote(
    session: Session,
    *,
    version: str,
    by: str,
    reason: str | None = None,
    expected_production: str | None = None,
) -> ModelVersion:
    """Make ``version`` production and archive the current one, in the caller's transaction.

    ``expected_production`` makes this a compare-and-swap: a promotion decided by comparing
    against one production version (the trainer's gate, hours earlier) must not replace a
    different one an admin promoted or rolled back to meanwhile. It is checked under the
    model's row locks, so no promotion can slip in between the check and the switch; on a
    mismatch :class:`ProductionChangedError` is raised before anything is written. ``None``
    skips the check (manual promotions replace whatever is current, by intent).
    """
    target = get_version(session, version)
    current = _production_among(_lock_model_rows(session, target.name))
    if expected_production is not None:
        actual = current.version if current is not None else None
        if actual != expected_production:
            raise ProductionChangedError(expected_production, actual)
    return _switch_production(session, target, current, by=by, reason=reason)


def _switch_production(
    session: Session,
    target: ModelVersion,
    current: ModelVersion | None,
    *,
    by: str,
    reason: str | None,
) -> ModelVersion:
    """Archive ``current`` and make ``target`` production; the caller holds the model's row
    locks (``_lock_model_rows``), so ``current`` is still the production row."""
    if current is not None and current.version == target.version:
        return target
    try:
        if current is not None:
            current.stage = ModelStage.ARCHIVED
            current.stage_reason = f"replaced by {target.version}"
            session.flush()
        target.stage = ModelStage.PRODUCTION
        target.promoted_at = database_now(session)
        target.promoted_by = by
        target.stage_reason = reason or "promoted"
        session.flush()
    except IntegrityError as exc:
        raise RegistryConflictError(
            "another promotion of this model happened at the same time; retry"
        ) from exc
    log.info(
        "promoted %s to production (was %s) by %s",
        target.version,
        current.version if current else None,
        by,
    )
    return target


def rollback(session: Session, *, name: str, by: str) -> ModelVersion:
    """Return production to the most recently promoted earlier version."""
    rows = _lock_model_rows(session, name)  # so that racing rollbacks agree on "previous"
    current = _production_among(rows)
    earlier = [
        row for row in rows if row.stage == ModelStage.ARCHIVED and row.promoted_at is not None
    ]
    # promoted_at is not None: ``earlier`` keeps only such rows.
    previous = max(earlier, key=lambda row: cast(datetime, row.promoted_at), default=None)
    if previous is None:
        raise ModelVersionNotFoundError(f"{name} has no earlier production version to roll back to")
    promoted = _switch_production(
        session,
        previous,
        current,
        by=by,
        reason=f"rollback from {current.version if current else 'none'}",
    )
    if current is not None:
        current.stage_reason = f"rolled back by {by}"
    return promoted


def ensure_production_model(
    session: Session, store: ObjectStore, *, name: str, default_bundle: Path
) -> ModelVersion:
    """Register the shipped model as the first production version when none exists."""
    row = production(session, name)
    if row is not None:
        return row
    metadata = read_metadata(default_bundle)
    # Every process of a first start gets here at once; on SQLite the checks below must not go
    # stale before the insert (embedded mode's API and workers all registered the shipped
    # model, and the losers failed their first job with "database is locked").
    take_write_lock(session)
    try:
        with session.begin_nested():  # another process may be registering it right now
            existing = session.get(ModelVersion, metadata.version)
            if existing is not None:
                return promote(
                    session,
                    version=existing.version,
                    by="system",
                    reason="no production version; re-promoted the shipped model",
                )
            return register_bundle(
                session,
                store,
                default_bundle,
                name=name,
                stage=ModelStage.PRODUCTION,
                by="system",
                reason="shipped default model, registered on first start",
            )
    except (IntegrityError, RegistryConflictError):
        row = production(session, name)
        if row is None:
            raise
        return row
