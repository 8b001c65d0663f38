"""Domain errors -> HTTP status codes, with one JSON error shape everywhere.

Only this module knows status codes; the library and the worker raise domain exceptions.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from brainmri.db.session import DATABASE_OUTAGE_ERRORS
from brainmri.errors import (
    BrainMRIError,
    DatasetError,
    InputError,
    InputTooLargeError,
    ModelBundleError,
    PathNotAllowedError,
    TooManyActiveJobsError,
    UnsafeArchiveError,
    UnsupportedFormatError,
)
from brainmri.registry.versions import ModelVersionNotFoundError, RegistryConflictError
from brainmri.storage import ObjectNotFoundError, StorageUnavailableError
from brainmri_api.auth import AuthenticationError, PermissionDeniedError

log = logging.getLogger(__name__)

#: ``Retry-After`` of a 429: when a key's place may have freed. Jobs take seconds (predict) to
#: hours (train), so any figure is a guess; this one keeps a waiting client's polling light.
BUSY_RETRY_AFTER_SECONDS = 10


class NotFoundError(BrainMRIError):
    code = "not_found"


class ConflictError(BrainMRIError):
    code = "conflict"


class ServiceUnavailableError(BrainMRIError):
    code = "service_unavailable"


def status_for(exc: BrainMRIError) -> int:
    """The HTTP status for a domain error (most specific first)."""
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, PermissionDeniedError):
        return 403
    if isinstance(exc, (NotFoundError, ModelVersionNotFoundError, ObjectNotFoundError)):
        return 404
    if isinstance(exc, (ConflictError, RegistryConflictError)):
        return 409
    if isinstance(exc, TooManyActiveJobsError):
        return 429
    if isinstance(exc, InputTooLargeError) or (
        isinstance(exc, UnsafeArchiveError) and exc.code == "zip_bomb"
    ):
        return 413
    if isinstance(exc, UnsupportedFormatError):
        return 415
    if isinstance(exc, (PathNotAllowedError, DatasetError)):
        return 400
    if isinstance(exc, InputError):
        return 422
    if isinstance(exc, (StorageUnavailableError, ServiceUnavailableError, ModelBundleError)):
        return 503
    return 500


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BrainMRIError)
    async def _domain(_: Request, exc: BrainMRIError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s: %s", exc.code, exc)
        headers = None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        elif status == 429:
            headers = {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}
        return error_response(status, exc.code, str(exc), headers)

    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", getattr(exc, "orig", exc))
        return error_response(
            503,
            "database_unavailable",
            "the database is unavailable; nothing was stored, try again shortly",
        )

    for outage in DATABASE_OUTAGE_ERRORS:
        app.add_exception_handler(outage, _database_down)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg')}"
            for error in exc.errors()
        )
        return error_response(422, "validation_error", problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            413: "request_too_large",
            400: "bad_request",
        }
        return error_response(
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            str(exc.detail),
            getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the service logs")
