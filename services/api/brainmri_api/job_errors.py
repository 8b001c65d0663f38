"""The HTTP status of a failed job, derived from the error code its worker recorded.

A job row keeps only ``{code, message}`` of the error that stopped it, yet an endpoint that
waits for the job (the legacy ``/predict`` and ``/metrics``) must answer with the status the
same error would have had if the API had raised it: 413 for a zip over the worker's member
limit, 503 for a store outage. So each code is mapped back to the error class it is raised as
and the status comes from ``errors.status_for``, the project's one error-to-status mapping,
instead of from a second table of numbers that drifts from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from brainmri.errors import (
    BrainMRIError,
    InputError,
    InputTooLargeError,
    ModelBundleError,
    UndecodableImageError,
    UnsafeArchiveError,
)
from brainmri_api.errors import NotFoundError, ServiceUnavailableError, status_for

# Codes that raise sites pass as ``code=...`` instead of their class's default, by the class
# they are raised as (the class decides the status). tests/platform/test_job_errors.py checks
# this against every raise site, so a new code cannot silently become a 500 here.
RAISED_AS: Mapping[type[BrainMRIError], tuple[str, ...]] = {
    InputError: (
        "invalid_archive",
        "decode_timeout",
        "dicom_burned_in_annotation",
        "unreadable_file",
        "time_budget_too_long",
        "invalid_train_options",
        "invalid_arch",
        "invalid_text",
    ),
    InputTooLargeError: (
        "file_too_large",
        "too_many_pixels",
        "too_many_pages",
        "metadata_too_large",
        "decode_memory_limit",
        "too_many_members",
        "zip_too_large",
        "too_many_frames",
    ),
    UnsafeArchiveError: (
        "zip_bomb",
        "unsafe_member_path",
        "symlink_member",
        "encrypted_member",
        "nested_archive",
    ),
    UndecodableImageError: (
        "truncated_image",
        "image_too_small",
        "non_finite_pixels",
        "decode_crashed",
    ),
    ModelBundleError: ("bundle_integrity",),
    NotFoundError: ("artifact_missing",),
    # The job runtime records this when Celery's time limit stops a job (and the trainer when
    # preparing data used up its share): the service could not finish the work in the time
    # it allows, a capacity problem like the other 503s, not a fault in the request or code.
    ServiceUnavailableError: ("time_limit_exceeded",),
}


def error_classes(root: type[BrainMRIError] = BrainMRIError) -> Iterator[type[BrainMRIError]]:
    """Every loaded subclass of ``root``, depth first (parents before children)."""
    for cls in root.__subclasses__():
        yield cls
        yield from error_classes(cls)


def example_error(cls: type[BrainMRIError], code: str) -> BrainMRIError:
    """An instance of ``cls`` carrying ``code``, as ``status_for`` sees a raised one.

    Built without calling ``__init__``: only its type and code matter, and a subclass's own
    constructor may want arguments that mean nothing here.
    """
    error = cls.__new__(cls)
    error.code = code
    return error


def code_statuses() -> dict[str, int]:
    """HTTP status by recorded error code, for every code an error class of ours carries.

    Built on each call (a few dozen classes): error classes defined in modules imported
    later are still found.
    """
    statuses: dict[str, int] = {}
    for cls in error_classes():
        statuses.setdefault(cls.code, status_for(example_error(cls, cls.code)))
    for cls, codes in RAISED_AS.items():
        for code in codes:
            statuses[code] = status_for(example_error(cls, code))
    return statuses


def status_for_code(code: str) -> int:
    """The status for a job that failed with ``code``; an unknown code (``internal_error``,
    a trainer's own) is a server fault, as ``status_for`` says of a bare domain error."""
    status = code_statuses().get(code)
    return status if status is not None else status_for(example_error(BrainMRIError, code))
