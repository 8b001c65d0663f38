"""Turning an untrusted upload into the bytes the service may store.

* raster images are re-encoded as a metadata-free PNG of the pixels the decoder would see
  (EXIF orientation applied, first TIFF page, lossless mode) - EXIF, text chunks and comments,
  which can carry patient names, are never stored;
* DICOM objects are de-identified (:mod:`brainmri.imaging.deid`); a zipped series is rebuilt
  as a new zip of de-identified members under generated names, non-DICOM members dropped;
* the result is then decoded again, so what is stored is known to be usable.

This runs in the API's decode sandbox (:mod:`brainmri.imaging.sandbox`) with byte, pixel,
member and time limits; nothing here imports torch.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pydicom
from PIL import Image, ImageOps
from pydicom.errors import InvalidDicomError as PydicomInvalidDicomError

from brainmri.errors import InvalidDicomError, NoDicomFoundError
from brainmri.imaging.decode import InputFormat, decode_image, sniff_format
from brainmri.imaging.deid import UIDMapper, deidentify, to_bytes
from brainmri.imaging.dicom import SliceSelection
from brainmri.imaging.inputs import InputKind, decode_input
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.safezip import extract_zip

EXTENSIONS = {
    InputFormat.PNG: ".png",
    InputFormat.JPEG: ".png",
    InputFormat.TIFF: ".png",
    InputFormat.BMP: ".png",
    InputFormat.DICOM: ".dcm",
    InputFormat.ZIP: ".zip",
}


@dataclass(frozen=True, slots=True)
class SanitizedUpload:
    data: bytes
    extension: str
    kind: InputKind
    source_format: str
    details: dict[str, Any]


def sanitize_upload(data: bytes, limits: InputLimits, selection: SliceSelection) -> SanitizedUpload:
    """Validate, strip identifying metadata, re-validate. Raises the input errors."""
    original = decode_input(data, limits=limits, dicom_selection=selection)  # 413/415/422 here
    fmt = sniff_format(data[:132])
    if fmt.is_raster:
        clean = canonical_png(data, limits)
    elif fmt is InputFormat.DICOM:
        clean = to_bytes(deidentify(_read_dicom(data), UIDMapper()))
    else:
        clean = _deidentified_zip(data, limits)
    # The byte limit is on what the user sent; the clean copy is the service's own product
    # (a JPEG re-encoded as lossless PNG can be several times larger), so only its size is
    # exempt from the re-check - pixels, frames and members are held to the same limits.
    clean_limits = replace(limits, max_bytes=max(limits.max_bytes, len(clean)))
    checked = decode_input(clean, limits=clean_limits, dicom_selection=selection)
    details = dict(checked.details)
    if "selected_indices" in details:
        details["selected_indices"] = list(details["selected_indices"])
    return SanitizedUpload(clean, EXTENSIONS[fmt], original.kind, fmt.value, details)


def canonical_png(data: bytes, limits: InputLimits) -> bytes:
    """Pixels only: oriented, first page, in a PNG mode that decodes to the same grey slice."""
    decode_image(data, limits)  # the same checks (and errors) as every decode
    with Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "TIFF", "BMP")) as image:
        image.load()
        oriented = ImageOps.exif_transpose(image)
        mode = oriented.mode
        if mode == "1":
            oriented = oriented.convert("L")
        elif mode in ("PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
            oriented = oriented.convert("RGBA")
        elif mode == "P":
            oriented = oriented.convert("RGB")  # the decoder's own path for opaque palettes
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            oriented = oriented.convert("RGB")
        elif mode == "F" or (mode.startswith("I") and mode != "I;16"):
            pixels = decode_image(data, limits).pixels
            oriented = Image.fromarray((pixels * 65535.0 + 0.5).astype("uint16"))
        buffer = io.BytesIO()
        oriented.save(buffer, format="PNG")  # no pnginfo: text/EXIF chunks are not written
    return buffer.getvalue()


def _read_dicom(data: bytes | Path) -> pydicom.Dataset:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return pydicom.dcmread(source, force=False)
    except (PydicomInvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError) as exc:
        raise InvalidDicomError(f"cannot read DICOM object: {exc}") from exc


def _deidentified_zip(data: bytes, limits: InputLimits) -> bytes:
    uids = UIDMapper()  # one mapping for the whole upload keeps the series consistent
    buffer = io.BytesIO()
    written = 0
    with (
        tempfile.TemporaryDirectory(prefix="brainmri-zip-") as tmp,
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for member in extract_zip(data, Path(tmp), limits, only=InputFormat.DICOM):
            written += 1
            archive.writestr(
                f"series/IMG{written:05d}.dcm", to_bytes(deidentify(_read_dicom(member.path), uids))
            )
    if not written:
        raise NoDicomFoundError("the zip holds no DICOM Part-10 object")
    return buffer.getvalue()
