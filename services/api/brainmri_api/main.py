"""Application factory: wiring only (routers, middleware, error handlers, startup)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from brainmri import DISCLAIMER, __version__
from brainmri.config import Settings, get_settings
from brainmri.db.session import session_scope
from brainmri.logs import configure_logging
from brainmri.registry.versions import ensure_production_model
from brainmri_api import openapi
from brainmri_api.auth import KeyRing
from brainmri_api.errors import install_error_handlers
from brainmri_api.limits import BodyLimitMiddleware
from brainmri_api.observability import Metrics, RequestMiddleware
from brainmri_api.routes import docs, health, jobs, legacy, me, models, web
from brainmri_api.state import AppState

log = logging.getLogger(__name__)

DESCRIPTION = f"""
**{DISCLAIMER}**

Submit a brain MRI slice (PNG/JPEG/TIFF/BMP), a DICOM file or a zipped DICOM series and poll
the job for class probabilities, `tumor_prob = 1 - P(no_tumor)`, the thresholded decision, the
model version and a Grad-CAM overlay. Every `/v1` endpoint needs an API key
(`Authorization: Bearer <key>` or `X-API-Key: <key>`).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    keyring = KeyRing(settings.api_keys, production=settings.environment == "production")
    metrics = Metrics(settings)
    state = AppState(settings=settings, keyring=keyring, metrics=metrics)
    metrics.watch_sandbox(state.sandbox)  # no child starts until the lifespan's warm-up

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_register_default_model, state)
        await run_in_threadpool(state.sandbox.warm_up)
        if not len(keyring):
            log.warning("no API keys configured: every /v1 request will be refused")
        yield
        state.sandbox.close()

    app = FastAPI(
        title="brainmri - brain MRI tumor triage",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        license_info={"name": "MIT"},
        docs_url=None,  # served by routes.docs, without a CDN
        redoc_url=None,  # ReDoc loads its logo from a CDN (see routes.docs)
    )
    app.state.brainmri = state
    openapi.install(app)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(legacy.router)
    app.include_router(models.router)
    app.include_router(me.router)
    app.include_router(web.router)
    app.include_router(docs.router)
    app.add_middleware(BodyLimitMiddleware, max_body=settings.max_upload_bytes)
    app.add_middleware(RequestMiddleware, metrics=metrics)
    return app


def _register_default_model(state: AppState) -> None:
    """First start: the shipped model becomes the first production version."""
    try:
        with session_scope(state.database_url) as session:
            row = ensure_production_model(
                session,
                state.store,
                name=state.settings.model_name,
                default_bundle=state.settings.resolved_model_dir,
            )
            log.info("production model: %s", row.version)
    except Exception:
        log.exception("could not register the default model; /readyz will report it")
