"""The web page: ``/`` serves ``static/index.html``, ``/static/{name}`` its CSS and ES modules.

Everything the page needs ships in ``brainmri_api/static`` (no CDN, no build step), so a strict
Content-Security-Policy can allow only this origin: no inline scripts or styles, no framing,
no third-party requests. Images are ``'self'``, ``blob:`` (artifacts are fetched with the API
key header and shown through object URLs, because ``<img src>`` cannot send headers) and
``data:``. The API key lives in the browser tab's ``sessionStorage``; no cookie is ever set,
so there is nothing for a cross-site request to ride on.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from brainmri_api.errors import NotFoundError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    # Revalidate every time: a new release must never run against a stale module graph.
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

router = APIRouter(include_in_schema=False)


def _static_file(name: str) -> FileResponse:
    """A file directly under, or below, ``STATIC_DIR`` with a known type - nothing else."""
    path = (STATIC_DIR / name).resolve()
    media_type = MEDIA_TYPES.get(path.suffix)
    if media_type is None or STATIC_DIR not in path.parents or not path.is_file():
        raise NotFoundError(f"no static file {name!r}")
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
def read_index() -> FileResponse:
    return _static_file("index.html")


@router.get("/static/{name:path}")
def read_static(name: str) -> FileResponse:
    return _static_file(name)
