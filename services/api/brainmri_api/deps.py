"""FastAPI dependencies as ``Annotated`` aliases (SessionDep, PrincipalDep, AdminDep, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from brainmri.db.session import get_sessionmaker
from brainmri.storage import ObjectStore
from brainmri_api.auth import AuthenticationError, PermissionDeniedError, Principal
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
    _bearer_doc: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key)],
) -> Principal:
    # The Security() parameters put both schemes into the OpenAPI document; the raw header is
    # parsed here so that a malformed Authorization header is refused, not ignored.
    presented = _presented_key(request.headers.get("authorization"), header_key)
    principal = state.keyring.authenticate(presented)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _presented_key(authorization: str | None, header_key: str | None) -> str | None:
    """The one key the request presents; anything ambiguous or malformed is refused.

    An ``Authorization`` header must be ``Bearer <key>``; when both headers are sent they must
    carry the same key. A bad credential is never rescued by a good one beside it.
    """
    bearer = None
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("the Authorization header must be 'Bearer <key>'")
        bearer = token.strip()
    if bearer is not None and header_key is not None and bearer != header_key:
        raise AuthenticationError("Authorization and X-API-Key carry different keys")
    return bearer if bearer is not None else header_key


def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("this operation needs an admin API key")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
