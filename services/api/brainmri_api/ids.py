"""Checks on client-supplied ids and strings before they reach the database.

PostgreSQL's driver raises ValueError for a NUL in any bound string (and JSONB refuses
``\u0000``), which would surface as a 500. So every id that arrives as a path parameter (job
id, model version, model name) is checked against the shape this project gives it - an id of
the wrong shape gets the same 404 as an unknown one, with a message that says what a valid id
looks like, and needs no query - and free strings that are stored are checked for control
characters (422).
"""

from __future__ import annotations

import re

from brainmri.config import MODEL_NAME_PATTERN
from brainmri.errors import InputError
from brainmri.registry.versions import ModelVersionNotFoundError
from brainmri_api.errors import NotFoundError

#: Job ids are ``str(uuid.uuid4())`` (API submissions and scheduled retrains).
JOB_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
#: Versions are ``<arch>-<YYYYmmdd-HHMMSS>-<sha256[:8]>`` (``ModelBundle.save``) or a bundle's
#: own version string; they name an object-store prefix, so they are one safe path segment.
#: 128 characters is the registry column's width.
MODEL_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
#: Architectures are timm model names (``resnet18``, ``efficientnet_b0``, ``convnext_tiny``).
ARCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Control characters free text may not hold (tab, newline and carriage return may).
_FORBIDDEN_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _shown(value: str, limit: int = 80) -> str:
    """The id as it may appear in a message: escaped (``repr``) and cut short."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def check_job_id(job_id: str) -> str:
    """``job_id`` if it is a UUID; otherwise the same 404 as an unknown job."""
    if not JOB_ID.fullmatch(job_id):
        raise NotFoundError(
            f"no job {_shown(job_id)}: job ids are UUIDs like 123e4567-e89b-42d3-a456-426614174000"
        )
    return job_id


def check_model_version(version: str) -> str:
    """``version`` if it has a version's shape; otherwise the same 404 as an unknown one."""
    if not MODEL_VERSION.fullmatch(version):
        raise ModelVersionNotFoundError(
            f"no model version {_shown(version)}: versions are 1-128 letters, digits and "
            "'.', '_', '+', '-', starting with a letter or digit (e.g. resnet18-20261128-"
            "122618-2b968984)"
        )
    return version


def check_model_name(name: str) -> str:
    """``name`` if it has a model name's shape; otherwise the same 404 as an unknown model."""
    if not MODEL_NAME.fullmatch(name):
        raise ModelVersionNotFoundError(
            f"no model named {_shown(name)}: model names are 1-64 letters, digits and "
            "'.', '_', '-', starting with a letter or digit (e.g. brainmri)"
        )
    return name


def check_arch(arch: str | None) -> str | None:
    """``arch`` if it can be a timm model name (422 otherwise); None stays None."""
    if arch is not None and not ARCH.fullmatch(arch):
        raise InputError(
            f"arch {_shown(arch)} is not a model name: use a timm name such as resnet18 "
            "(letters, digits, '_', '.', '-')",
            code="invalid_arch",
        )
    return arch


def check_text(field: str, value: str | None) -> str | None:
    """``value`` if it holds no control character other than tab and newlines (422)."""
    if value is not None and (match := _FORBIDDEN_IN_TEXT.search(value)):
        raise InputError(
            f"{field} contains a control character (U+{ord(match.group()):04X} at position "
            f"{match.start()})",
            code="invalid_text",
        )
    return value
