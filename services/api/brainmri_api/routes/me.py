"""``/v1/me``: who the presented API key is, so clients can show admin controls only to admins
(the server still checks the role on every admin endpoint)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from brainmri import DISCLAIMER
from brainmri_api.deps import PrincipalDep
from brainmri_api.routes.jobs import ERRORS

router = APIRouter(prefix="/v1", tags=["auth"])


class Me(BaseModel):
    key_id: str
    role: Literal["user", "admin"]
    disclaimer: str = DISCLAIMER


@router.get("/me", response_model=Me, responses=ERRORS, summary="The calling API key's role")
def read_me(principal: PrincipalDep) -> Me:
    return Me(key_id=principal.key_id, role=principal.role)
