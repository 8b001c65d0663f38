"""Domain exceptions.

The library raises these; only the HTTP layer maps them to status codes. Each carries a stable
machine-readable ``code`` so clients (and tests) can tell problems apart without parsing prose.
"""

from __future__ import annotations


class BrainMRIError(Exception):
    """Base class for every error this project raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class InputError(BrainMRIError):
    """Something is wrong with what a client sent; the client can fix it."""

    code = "invalid_input"


class EmptyInputError(InputError):
    code = "empty_file"


class UnsupportedFormatError(InputError):
    """The bytes are not an image, DICOM file or zip archive we accept."""

    code = "unsupported_format"


class UndecodableImageError(InputError):
    """The format is recognised but the content cannot be decoded (truncated, corrupt)."""

    code = "undecodable_image"


class InputTooLargeError(InputError):
    """A size limit was exceeded: bytes, pixels, pages, members or decompressed size."""

    code = "input_too_large"


class UnsafeArchiveError(InputError):
    """A zip archive tried something dangerous: path traversal, links, nesting, bombs."""

    code = "unsafe_archive"


class NoDicomFoundError(InputError):
    code = "no_dicom_in_archive"


class DicomPixelDataError(InputError):
    """A DICOM object has no usable pixel data."""

    code = "dicom_no_pixel_data"


class InvalidDicomError(InputError):
    code = "invalid_dicom"


class InconsistentSeriesError(InputError):
    """Slices of one series disagree in shape or cannot be ordered."""

    code = "inconsistent_series"


class SeriesNotFoundError(InputError):
    code = "series_not_found"


class PathNotAllowedError(InputError):
    """A server-side path outside the configured allow-list of roots was requested."""

    code = "path_not_allowed"


class DatasetError(InputError):
    """A dataset folder or manifest cannot be used (no classes found, unknown labels, ...)."""

    code = "invalid_dataset"


class ModelBundleError(BrainMRIError):
    """A model bundle is missing, malformed or fails its integrity check."""

    code = "invalid_model_bundle"


class ConfigurationError(BrainMRIError):
    code = "configuration_error"


class TooManyActiveJobsError(BrainMRIError):
    """One API key has as many queued and running jobs as it may: wait for some to finish.

    Not an input error (the request itself is fine) and not an outage: the caller should retry
    later, which the HTTP layer says with 429 and ``Retry-After``.
    """

    code = "too_many_active_jobs"

    def __init__(self, active: int, limit: int) -> None:
        super().__init__(
            f"this API key has {active} queued or running jobs; the limit is {limit} "
            "(BRAINMRI_MAX_ACTIVE_JOBS_PER_KEY). Try again when some have finished"
        )
        self.active = active
        self.limit = limit
