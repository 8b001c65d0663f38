"""``/v1/models``: the registry - list, inspect, promote, roll back."""

from __future__ import annotations

import re

from fastapi import APIRouter

from brainmri.db.models import ModelVersion
from brainmri.registry.headline import HEADLINE_KEYS, headline_metrics
from brainmri.registry.versions import get_version, list_versions, production, promote, rollback
from brainmri_api.auth import Principal
from brainmri_api.deps import AdminDep, PrincipalDep, SessionDep, StateDep
from brainmri_api.ids import check_model_name, check_model_version, check_text
from brainmri_api.routes.jobs import ERRORS
from brainmri_api.schemas import ModelList, ModelPublic, PromoteRequest

router = APIRouter(prefix="/v1/models", tags=["models"])
_KEY_ID = re.compile(r"\b[0-9a-f]{16}\b")  # what auth.key_id makes of a key


def as_seen_by(text: str | None, viewer: Principal) -> str | None:
    """Registry text (who promoted, why a stage changed) as ``viewer`` may see it.

    Manual promotions and rollbacks record the admin's key id, a truncated hash of the key:
    users may learn that an admin did it, not which key, so that no hash of an admin key is
    handed to every key holder to test guesses against. Admins see the ids as stored.
    """
    if text is None or viewer.is_admin:
        return text
    return _KEY_ID.sub("an admin", text)


def model_public(row: ModelVersion, current: ModelVersion | None, viewer: Principal) -> ModelPublic:
    versus = None
    mine = headline_metrics(row.metrics or {})
    if current is not None and current.version != row.version:
        theirs = headline_metrics(current.metrics or {})
        versus = {
            "production_version": current.version,
            "this": mine,
            "production": theirs,
            "delta": {
                k: (mine[k] - theirs[k])
                if mine.get(k) is not None and theirs.get(k) is not None
                else None
                for k in HEADLINE_KEYS
            },
        }
        same_test = (row.metrics or {}).get("production_on_same_test")
        if same_test and (row.metrics or {}).get("production_version") == current.version:
            versus["production_on_same_test"] = same_test
            # B - A with its paired 95% interval, what the promotion gate decided on.
            paired = (row.metrics or {}).get("paired_vs_production")
            if paired:
                versus["paired_on_same_test"] = paired
    return ModelPublic(
        version=row.version,
        name=row.name,
        arch=row.arch,
        stage=row.stage,
        metrics=row.metrics or {},
        headline=mine,
        data_fingerprint=row.data_fingerprint,
        training_job_id=row.training_job_id,
        stage_reason=as_seen_by(row.stage_reason, viewer),
        created_at=row.created_at,
        promoted_at=row.promoted_at,
        promoted_by=as_seen_by(row.promoted_by, viewer),
        versus_production=versus,
    )


@router.get("", response_model=ModelList, responses=ERRORS, summary="Registered model versions")
def list_models(state: StateDep, session: SessionDep, viewer: PrincipalDep) -> ModelList:
    name = state.settings.model_name
    current = production(session, name)
    return ModelList(
        items=[model_public(row, current, viewer) for row in list_versions(session, name)],
        production=current.version if current else None,
    )


@router.get("/{version}", response_model=ModelPublic, responses=ERRORS, summary="One version")
def read_model(
    version: str, state: StateDep, session: SessionDep, viewer: PrincipalDep
) -> ModelPublic:
    row = get_version(session, check_model_version(version))
    return model_public(row, production(session, row.name), viewer)


@router.post(
    "/{version}/promote",
    response_model=ModelPublic,
    responses=ERRORS,
    summary="Make a version production (admin)",
)
def promote_model(
    version: str, session: SessionDep, principal: AdminDep, request: PromoteRequest | None = None
) -> ModelPublic:
    row = promote(
        session,
        version=check_model_version(version),
        by=principal.key_id,
        reason=check_text("reason", request.reason if request else None) or "manual promotion",
    )
    session.flush()
    return model_public(row, row, principal)


@router.post(
    "/{name}/rollback",
    response_model=ModelPublic,
    responses=ERRORS,
    summary="Return production to the previously promoted version (admin)",
)
def rollback_model(name: str, session: SessionDep, principal: AdminDep) -> ModelPublic:
    row = rollback(session, name=check_model_name(name), by=principal.key_id)
    session.flush()
    return model_public(row, row, principal)
