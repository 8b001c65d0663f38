"""Schemathesis against the OpenAPI schema: user and admin passes, zero server errors, and
no operation that declares authentication ever succeeds without it (``ignored_auth``).

The app is built when the module is imported: ``schema.parametrize`` needs the schema then
(schemathesis's ``from_fixture`` does not run on this pytest). Its temp dir goes at exit.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth

from brainmri.config import Settings
from brainmri.db.migrate import upgrade
from brainmri_api.main import create_app
from tests.conftest import PROJECT_ROOT, make_bundle

USER_KEY = "fuzz-user-0123456789abcdef"
ADMIN_KEY = "fuzz-admin-0123456789abcdef"
EXAMPLES = 30
COUNTS = {"user": 0, "admin": 0, "server_errors": 0}

_base = Path(tempfile.mkdtemp(prefix="brainmri-fuzz-"))
atexit.register(shutil.rmtree, _base, ignore_errors=True)
make_bundle(_base / "bundle", img_size=48)
(_base / "allowed" / "glioma").mkdir(parents=True)
_settings = Settings(
    data_dir=_base / "data",
    model_dir=_base / "bundle",
    api_keys=f"{USER_KEY}:user,{ADMIN_KEY}:admin",
    allowed_roots=str(_base / "allowed"),
    legacy_wait_seconds=0.5,
)
upgrade(_settings.resolved_database_url)
app = create_app(_settings)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module", autouse=True)
def _record_fuzz_figures() -> Iterator[None]:
    """Write the counts for the README's reliability table once both passes have run. Zero
    server errors is asserted per request (``not_a_server_error``), not here."""
    yield
    if COUNTS["user"] and COUNTS["admin"]:
        out = PROJECT_ROOT / "test-artifacts" / "reliability"
        out.mkdir(parents=True, exist_ok=True)
        (out / "fuzz.json").write_text(json.dumps(COUNTS, indent=2))


def _run(case, key: str, role: str) -> None:  # type: ignore[no-untyped-def]
    COUNTS[role] += 1
    response = case.call(headers={"X-API-Key": key})
    if response.status_code >= 500:
        COUNTS["server_errors"] += 1
    case.validate_response(response, checks=[not_a_server_error, ignored_auth])


@schema.parametrize()
@FUZZ
def test_fuzz_as_user(case) -> None:  # type: ignore[no-untyped-def]
    _run(case, USER_KEY, "user")


@schema.parametrize()
@FUZZ
def test_fuzz_as_admin(case) -> None:  # type: ignore[no-untyped-def]
    _run(case, ADMIN_KEY, "admin")
