"""Raster image decoding: format detected by content, every mode normalised one way.

The one documented normalisation (every path in the project goes through :func:`decode_image`):

* The format is sniffed from the bytes; the file name is never consulted (the real data has
  PNG files named ``.jpg``). Only PNG, JPEG, TIFF and BMP decoders are enabled.
* EXIF orientation is applied; a multi-page TIFF contributes its first page (page count capped).
* Output is a single-channel ``float32`` array in ``[0, 1]`` of shape ``(H, W)``:
    - 8-bit grey (``L``, ``1``): value / 255.
    - colour (``RGB``, ``CMYK``, ``YCbCr``, palette): ITU-R BT.601 luma of RGB / 255.
    - alpha (``LA``, ``RGBA``, palette with transparency): composited on black first, because a
      transparent background carries no signal.
    - 16-bit, 32-bit integer and float images: linearly rescaled from the image's own range
      to 0..1 (:func:`robust_scale`): its min..max, or, where lone specks stretch that far
      beyond the slice's structures, the min..max of its 3x3 median-filtered copy with the
      specks clipped, so they cannot turn the brain black (a constant image becomes zeros).
      MRI exports rarely use the full 16-bit range, so dividing by 65535 would give a black
      image and clamping would give white.
* The pixel count is checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.ndimage import median_filter

from brainmri.errors import (
    EmptyInputError,
    InputTooLargeError,
    UndecodableImageError,
    UnsupportedFormatError,
)
from brainmri.imaging.limits import InputLimits

# Pillow only warns between its own limit and twice that; a warning that nobody reads is no guard.
warnings.simplefilter("error", Image.DecompressionBombWarning)

_PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")
#: DIB header sizes of the BMP versions (OS/2 1.x, Windows 3 and its v2/v3 extensions, OS/2 2.x
#: short and full, Windows v4 and v5). "BM" alone is two letters of text ("BMW ...").
_BMP_DIB_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_BMP_FILE_HEADER_SIZE = 14
#: Pillow puts the file object's repr ("<_io.BytesIO object at 0x7f...>") in some messages.
_OBJECT_REPR = re.compile(r"\s*<[^<>]*? object at 0x[0-9a-fA-F]+>")
_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MIN_IMAGE_SIDE = 16


class InputFormat(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"
    BMP = "bmp"
    DICOM = "dicom"
    ZIP = "zip"
    UNKNOWN = "unknown"

    @property
    def is_raster(self) -> bool:
        return self in {InputFormat.PNG, InputFormat.JPEG, InputFormat.TIFF, InputFormat.BMP}


def sniff_format(head: bytes) -> InputFormat:
    """Identify an input from its first bytes (at least 132 are needed to see DICOM)."""
    # DICOM first: the 128-byte preamble may legally hold a TIFF header (dual-personality
    # files, e.g. pydicom's MR_small.dcm), and such a file must be read as DICOM.
    if len(head) >= 132 and head[128:132] == b"DICM":
        return InputFormat.DICOM
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return InputFormat.PNG
    if head.startswith(b"\xff\xd8\xff"):
        return InputFormat.JPEG
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return InputFormat.TIFF
    if head.startswith(b"BM") and _plausible_bmp_header(head):
        return InputFormat.BMP
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return InputFormat.ZIP
    return InputFormat.UNKNOWN


def _plausible_bmp_header(head: bytes) -> bool:
    """A known DIB header size at bytes 14-18, and a file-size field that is either unset (0,
    as a few writers leave it) or at least as large as the two headers."""
    if len(head) < 26:
        return False
    (file_size,) = struct.unpack_from("<I", head, 2)
    (dib_size,) = struct.unpack_from("<I", head, 14)
    if dib_size not in _BMP_DIB_HEADER_SIZES:
        return False
    return file_size == 0 or file_size >= _BMP_FILE_HEADER_SIZE + dib_size


def _without_object_reprs(message: str) -> str:
    """The decoder's message minus in-memory object reprs (addresses mean nothing to a client)."""
    return _OBJECT_REPR.sub("", message).strip() or "the content is not a readable image"


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """A decoded slice plus what we know about where it came from (no identifiers)."""

    pixels: np.ndarray  # float32 (H, W) in [0, 1]
    source_format: InputFormat
    source_mode: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def decode_image(data: bytes, limits: InputLimits | None = None) -> DecodedImage:
    """Decode PNG/JPEG/TIFF/BMP bytes into a normalised grey ``float32`` slice.

    Raises:
        EmptyInputError: no bytes.
        UnsupportedFormatError: not one of the four raster formats.
        InputTooLargeError: too many bytes, pixels or pages.
        UndecodableImageError: recognised but corrupt or truncated.
    """
    limits = limits or InputLimits()
    if not data:
        raise EmptyInputError("the file is empty")
    if len(data) > limits.max_bytes:
        raise InputTooLargeError(
            f"the file is {len(data)} bytes; the limit is {limits.max_bytes}", code="file_too_large"
        )
    fmt = sniff_format(data[:132])
    if not fmt.is_raster:
        raise UnsupportedFormatError(
            f"not a PNG, JPEG, TIFF or BMP image (format detected from content: {fmt.value})"
        )
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as image:
            _check_geometry(image, limits)
            image.load()
            oriented = ImageOps.exif_transpose(image)
            pixels = _to_grey_float(oriented)
            mode = image.mode
    except (InputTooLargeError, UndecodableImageError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputTooLargeError(
            f"image exceeds the decompression-bomb guard: {exc}", code="too_many_pixels"
        ) from exc
    except ValueError as exc:
        message = _without_object_reprs(str(exc))
        if "too large" in message.lower():  # PNG text/iCCP chunk bombs
            raise InputTooLargeError(
                f"image metadata chunk is too large: {message}", code="metadata_too_large"
            ) from exc
        raise UndecodableImageError(f"cannot decode {fmt.value} image: {message}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:
        message = _without_object_reprs(str(exc))
        code = "truncated_image" if "truncat" in message.lower() else "undecodable_image"
        raise UndecodableImageError(
            f"cannot decode {fmt.value} image: {message}", code=code
        ) from exc
    return DecodedImage(pixels=pixels, source_format=fmt, source_mode=mode)


def _check_geometry(image: Image.Image, limits: InputLimits) -> None:
    width, height = image.size
    if width * height > limits.max_pixels:
        raise InputTooLargeError(
            f"image is {width}x{height} = {width * height} pixels; "
            f"the limit is {limits.max_pixels}",
            code="too_many_pixels",
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise UndecodableImageError(
            f"image is {width}x{height}; both sides must be at least {MIN_IMAGE_SIDE} px",
            code="image_too_small",
        )
    pages = getattr(image, "n_frames", 1)
    if pages > limits.max_tiff_pages:
        raise InputTooLargeError(
            f"image has {pages} pages; the limit is {limits.max_tiff_pages}",
            code="too_many_pages",
        )


def _to_grey_float(image: Image.Image) -> np.ndarray:
    """Apply the module's documented mode normalisation."""
    mode = image.mode
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if mode.startswith("I") or mode == "F":
        return robust_scale(np.asarray(image, dtype=np.float64))
    has_alpha = mode in ("LA", "RGBA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        grey = rgba[..., :3] @ _BT601
        return (grey * rgba[..., 3]).astype(np.float32)
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return (rgb @ _BT601).astype(np.float32)


def minmax_scale(values: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] from the array's own range; constant arrays become zeros."""
    values = _finite(values)
    return _scaled(values, float(values.min()), float(values.max()))


#: Side of the median filter that finds a slice's lone specks (see :func:`robust_scale`).
SPECK_FILTER_SIZE = 3
#: A slice's full range must exceed its filtered range this many times before the specks
#: count as artefacts. On the 835 validation slices as clean 16-bit copies the ratio was at
#: most 1.24 (median 1.04): those keep their exact min..max scaling.
SPECK_RANGE_RATIO = 1.5


def robust_scale(values: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] by min..max, unless lone specks stretch the range far beyond the
    slice's structures; then from the range of the structures, with the specks clipped.

    Raw MR values can hold a few isolated pixels far brighter (or darker) than any tissue:
    spikes, flow artefacts, a hot detector pixel. Min..max maps them to white and the brain
    to near black: 0.1% such pixels at four times full scale took the default model's
    validation macro-F1 from 0.967 to 0.141. A 3x3 median filter (each slice on its own when
    ``values`` is a stack) removes lone pixels and keeps anything the size of anatomy; when
    the full range is more than ``SPECK_RANGE_RATIO`` times the filtered one, the filtered
    range is used. Otherwise nothing changes, because the filtered range alone, or
    percentile clipping, brighten a clean slice enough to cost accuracy (0.5-99.5%: -0.05
    macro-F1; ``scripts/raw_16bit_slices.py``, README "16-bit input").
    """
    values = _finite(values)
    low, high = float(values.min()), float(values.max())
    size = (1,) * (values.ndim - 2) + (SPECK_FILTER_SIZE,) * 2
    smooth = median_filter(values, size=size, mode="nearest")
    inner_low, inner_high = float(smooth.min()), float(smooth.max())
    if inner_high > inner_low and high - low > SPECK_RANGE_RATIO * (inner_high - inner_low):
        low, high = inner_low, inner_high
    return _scaled(values, low, high)


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` from ``low..high`` onto 0..1, anything outside clipped; zeros when the range
    is empty (a constant image)."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _finite(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise UndecodableImageError("image contains non-finite values", code="non_finite_pixels")
    return values
