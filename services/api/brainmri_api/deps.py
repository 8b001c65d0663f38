"""FastAPI dependencies as ``Annotated`` aliases (SessionDep, PrincipalDep, AdminDep, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from brainmri.db.session import get_sessionmaker
from brainmri.storage import ObjectStore
from brainmri_api.auth import PermissionDeniedError, Principal
from brainmri_api.state import AppState

_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key header")


def get_state(request: Request) -> AppState:
    return request.app.state.brainmri


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    session = get_sessionmaker(state.database_url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def get_store(state: StateDep) -> ObjectStore:
    return state.store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


def get_principal(
    state: StateDep,
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key)],
) -> Principal:
    presented = bearer.credentials if bearer else header_key
    principal = state.keyring.authenticate(presented)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("this operation needs an admin API key")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
