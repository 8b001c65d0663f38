"""One entry point for every kind of input: raster image, DICOM object or zipped series."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from brainmri.errors import (
    EmptyInputError,
    InputError,
    InputTooLargeError,
    UnsupportedFormatError,
)
from brainmri.imaging.decode import InputFormat, decode_image, sniff_format
from brainmri.imaging.dicom import SliceSelection, read_dicom_bytes, read_dicom_zip
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.sandbox import run_decoder

if TYPE_CHECKING:
    from brainmri.imaging.sandbox import DecodeSandbox

InputKind = Literal["image", "dicom", "dicom_zip"]


@dataclass(frozen=True, slots=True)
class DecodedInput:
    """Slices ready for preprocessing, and JSON-safe, non-identifying facts about the source."""

    slices: list[np.ndarray]
    kind: InputKind
    source_format: InputFormat
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def display_slice(self) -> np.ndarray:
        """The slice shown to people (the centre one of those scored)."""
        return self.slices[len(self.slices) // 2]


def decode_input(
    data: bytes,
    *,
    limits: InputLimits | None = None,
    dicom_selection: SliceSelection | None = None,
) -> DecodedInput:
    """Decode bytes of any accepted input type, detected by content.

    Raises the :mod:`brainmri.errors` input errors; never returns an empty slice list.
    """
    limits = limits or InputLimits()
    if not data:
        raise EmptyInputError("the file is empty")
    if len(data) > limits.max_bytes:
        raise InputTooLargeError(
            f"the file is {len(data)} bytes; the limit is {limits.max_bytes}", code="file_too_large"
        )
    fmt = sniff_format(data[:132])
    if fmt.is_raster:
        image = decode_image(data, limits)
        return DecodedInput(
            slices=[image.pixels],
            kind="image",
            source_format=fmt,
            details={"width": image.width, "height": image.height, "mode": image.source_mode},
        )
    if fmt is InputFormat.DICOM:
        series = read_dicom_bytes(data, dicom_selection, limits)
        return DecodedInput(series.slices, "dicom", fmt, asdict(series.info))
    if fmt is InputFormat.ZIP:
        series = read_dicom_zip(data, dicom_selection, limits)
        return DecodedInput(series.slices, "dicom_zip", fmt, asdict(series.info))
    raise UnsupportedFormatError(
        "unsupported file type: expected a PNG, JPEG, TIFF or BMP image, a DICOM Part-10 file, "
        "or a zip of a DICOM series"
    )


def read_file_limited(path: Path, limits: InputLimits | None = None) -> bytes:
    """Read a local file, refusing it before reading if it is larger than the byte limit."""
    limits = limits or InputLimits()
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise InputTooLargeError(
            f"{path.name} is {size} bytes; the limit is {limits.max_bytes}", code="file_too_large"
        )
    return path.read_bytes()


def raster_pixels(data: bytes, limits: InputLimits) -> np.ndarray:
    """A raster image's grey pixels: what a decode sandbox child computes for bulk readers."""
    return decode_image(data, limits).pixels


def read_raster_or_reason(
    path: Path, limits: InputLimits | None = None, *, sandbox: DecodeSandbox | None = None
) -> tuple[np.ndarray, str] | str:
    """A local PNG/JPEG/TIFF/BMP file's grey pixels and the sha256 of its bytes (what dataset
    fingerprints are made of), or, when it cannot be read or decoded, why - as one line naming
    the file. For bulk readers (training caches, data packs) that report bad files and go on.

    With ``sandbox`` the file is read here and decoded in a sandbox child (train jobs: their
    data comes from users' S3 prefixes); without, in this process (a user's own files)."""
    limits = limits or InputLimits()
    try:
        data = read_file_limited(path, limits)
        pixels = run_decoder(sandbox, raster_pixels, data, limits)
    except (InputError, OSError) as exc:
        return f"{path}: {exc}"
    return pixels, hashlib.sha256(data).hexdigest()
