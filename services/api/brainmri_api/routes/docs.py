"""``/docs``: Swagger UI served by this process instead of a CDN.

Why: FastAPI's own page loads its script and stylesheet from a public CDN, so on a hospital
network without internet it stays blank. The pinned ``fastapi-offline`` package ships those
files (Swagger UI 5, which reads the OpenAPI 3.1 schema FastAPI writes); only its static files
are used, served under ``/docs/assets/`` by name from a fixed list, so nothing else in that
package, or on the server, is reachable through the route. ReDoc stays off: even served
locally it fetches its logo from the vendor's CDN.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from brainmri_api.errors import NotFoundError

ASSETS_PATH = "/docs/assets"
ASSET_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    """The path prefix a proxy mounts the API under: every URL the pages load needs it too."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
    )


@router.get(f"{ASSETS_PATH}/{{name}}")
def docs_asset(name: str) -> FileResponse:
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise NotFoundError(f"no docs asset {name!r}")
    # The files change only with the pinned package version: a day of caching is safe.
    return FileResponse(
        ASSET_DIR / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
    )
