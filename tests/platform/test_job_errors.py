"""A failed job's recorded error code gets the status the same error has everywhere in the API.

The legacy ``/predict`` and ``/metrics`` wait for their job and answer its failure; a worker
whose limits differ from the API's (or whose object store is down) must not turn a client's
413/422 or an outage's 503 into a 500.
"""

from __future__ import annotations

import ast
import json

import pytest

from brainmri.db.models import Job, JobKind, JobStatus
from brainmri.errors import BrainMRIError
from brainmri_api.errors import status_for
from brainmri_api.job_errors import error_classes, example_error, status_for_code
from brainmri_api.routes.legacy import _failed
from tests.conftest import PROJECT_ROOT

SOURCE_DIRS = ("shared/brainmri", "services")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("storage_unavailable", 503),
        ("time_limit_exceeded", 503),
        ("invalid_model_bundle", 503),
        ("too_many_members", 413),
        ("zip_too_large", 413),
        ("zip_bomb", 413),
        ("file_too_large", 413),
        ("too_many_pixels", 413),
        ("unsupported_format", 415),
        ("invalid_dicom", 422),
        ("inconsistent_series", 422),
        ("series_not_found", 422),
        ("no_dicom_in_archive", 422),
        ("symlink_member", 422),  # an unsafe archive that is not a bomb
        ("undecodable_image", 422),
        ("truncated_image", 422),
        ("empty_file", 422),
        ("path_not_allowed", 400),
        ("invalid_dataset", 400),
        ("internal_error", 500),
        ("job_failed", 500),
        ("init_mismatch", 500),
    ],
)
def test_status_for_recorded_codes(code: str, status: int) -> None:
    assert status_for_code(code) == status


def _raise_sites() -> list[tuple[str, str, str]]:
    """``(where, class name, code)`` of every ``SomeError(..., code="literal")`` call."""
    sites = []
    for folder in SOURCE_DIRS:
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                for keyword in node.keywords:
                    if (
                        name.endswith("Error")
                        and keyword.arg == "code"
                        and isinstance(keyword.value, ast.Constant)
                        and isinstance(keyword.value.value, str)
                    ):
                        where = f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}"
                        sites.append((where, name, keyword.value.value))
    return sites


def test_every_code_raised_in_the_code_base_keeps_its_class_status() -> None:
    """A code passed at a raise site maps to what ``status_for`` gives that raised error, so
    a new ``code=`` cannot silently become a 500 for the legacy endpoints."""
    classes = {cls.__name__: cls for cls in error_classes()} | {"BrainMRIError": BrainMRIError}
    sites = _raise_sites()
    assert {"too_many_members", "zip_bomb", "zip_too_large"} <= {code for _, _, code in sites}
    wrong = []
    for where, name, code in sites:
        # Raised as a bare BrainMRIError by the trainer, but a job stopped by its time limit
        # is a capacity problem (503), as job_errors.RAISED_AS says.
        if code == "time_limit_exceeded":
            continue
        assert name in classes, f"{where}: {name} is not a BrainMRIError subclass"
        expected = status_for(example_error(classes[name], code))
        if status_for_code(code) != expected:
            wrong.append(
                f"{where}: {name}(code={code!r}) is {expected}, not {status_for_code(code)}"
            )
    assert not wrong, wrong


def _job(status: JobStatus, code: str) -> Job:
    return Job(
        id="job-0123",
        kind=JobKind.EVALUATE.value,
        status=status.value,
        owner="k",
        error={"code": code, "message": f"{code} happened"},
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [("storage_unavailable", 503), ("too_many_members", 413), ("invalid_dicom", 422)],
)
def test_legacy_answer_for_a_failed_job(code: str, status: int) -> None:
    response = _failed(_job(JobStatus.FAILED, code))
    assert response.status_code == status
    assert json.loads(response.body) == {"error": {"code": code, "message": f"{code} happened"}}
    assert response.headers["X-Job-Id"] == "job-0123"


def test_legacy_answer_for_a_cancelled_job_is_409() -> None:
    assert _failed(_job(JobStatus.CANCELLED, "cancelled")).status_code == 409
