"""DICOM input: a single Part-10 file or a zipped series, turned into ordered grey slices.

What this module does, in order:

1. Reads headers only (no pixels) of every member; files that are not DICOM are skipped.
   Untrusted input is never parsed with ``force=True``.
2. Groups instances by SeriesInstanceUID and picks the series with the most slices (or the one
   asked for). Mixed series are never stacked together.
3. Expands multi-frame objects into one slice per frame and orders slices along the slice
   normal (ImagePositionPatient projected on the ImageOrientationPatient normal), falling back
   to InstanceNumber, then file order.
4. Decodes pixels of the *selected* slices only (centre slice, or the middle K), applying the
   modality LUT (RescaleSlope/Intercept), then VOI windowing when the object carries one,
   otherwise one range for all selected slices, their joint min..max unless lone specks
   stretch it far beyond the slices' structures (:func:`~brainmri.imaging.decode.robust_scale`:
   a few lone bright pixels must not turn the brain black); MONOCHROME1 is inverted last.

A header value that is not the number its VR promises (non-numeric DS/IS text, a US value of
the wrong byte length, a multi-valued RescaleSlope) raises :class:`InvalidDicomError` naming the
attribute - a client error, never a crash - but not the value, which could be anything.

Patient-identifying attributes are never read into the result, logged or returned: the only
metadata that leaves this module is geometry and acquisition type (see :class:`SeriesInfo`).
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException
from pydicom.errors import InvalidDicomError as PydicomInvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence as DicomSequence

from brainmri.errors import (
    DicomPixelDataError,
    EmptyInputError,
    InconsistentSeriesError,
    InputTooLargeError,
    InvalidDicomError,
    NoDicomFoundError,
    SeriesNotFoundError,
)
from brainmri.imaging.decode import _BT601, InputFormat, minmax_scale, robust_scale
from brainmri.imaging.deid import ENUMERATED_VALUES
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.safezip import extract_zip

log = logging.getLogger(__name__)

SliceMode = Literal["center", "middle_k"]

#: What pydicom and NumPy raise when a header value is not what its VR promises: text that is
#: not a number, a binary value of the wrong length, a list where one value belongs (NumPy's
#: "no loop for dtype <U3" is a TypeError), a sequence item without its mandatory members.
_MALFORMED = (ValueError, TypeError, AttributeError, IndexError, BytesLengthException)


@dataclass(frozen=True, slots=True)
class SliceSelection:
    """Which slices of a series to score.

    ``center`` reproduces the original service (index ``n // 2``); ``middle_k`` takes the ``k``
    slices around the centre so that callers can aggregate their predictions.
    """

    mode: SliceMode = "center"
    k: int = 5
    series_uid: str | None = None

    def indices(self, n: int) -> list[int]:
        if n <= 0:
            return []
        if self.mode == "center":
            return [n // 2]
        k = max(1, min(self.k, n))
        start = max(0, n // 2 - k // 2)
        start = min(start, n - k)
        return list(range(start, start + k))


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """Non-identifying facts about the series that was read."""

    modality: str | None
    rows: int
    columns: int
    n_slices: int
    n_series_in_input: int
    selected_indices: tuple[int, ...]
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None
    photometric: str
    windowed: bool


@dataclass(frozen=True, slots=True)
class DicomSeries:
    slices: list[np.ndarray]  # float32 (H, W) in [0, 1], in the order of ``info.selected_indices``
    info: SeriesInfo


@dataclass(slots=True)
class _Instance:
    """One frame of one file, with what is needed to order it. Holds no identifiers."""

    source: Path | bytes
    frame: int
    n_frames: int
    rows: int
    columns: int
    instance_number: int | None
    position: float | None
    order: int
    meta: dict[str, object] = field(default_factory=dict)


def read_dicom_bytes(
    data: bytes, selection: SliceSelection | None = None, limits: InputLimits | None = None
) -> DicomSeries:
    """Read a single Part-10 DICOM object (possibly multi-frame)."""
    limits = limits or InputLimits()
    if not data:
        raise EmptyInputError("the file is empty")
    if len(data) > limits.max_bytes:
        raise InputTooLargeError(
            f"the file is {len(data)} bytes; the limit is {limits.max_bytes}", code="file_too_large"
        )
    header = _read_header(data)
    if header is None:
        raise InvalidDicomError("not a readable DICOM Part-10 file")
    instances = _instances_of(header, data, 0, limits)
    return _build_series({_series_uid(header): instances}, selection)


def read_dicom_zip(
    data: bytes, selection: SliceSelection | None = None, limits: InputLimits | None = None
) -> DicomSeries:
    """Read the DICOM series inside a zip archive; extraction happens in a private temp dir."""
    limits = limits or InputLimits()
    if not data:
        raise EmptyInputError("the file is empty")
    with tempfile.TemporaryDirectory(prefix="brainmri-zip-") as tmp:
        members = extract_zip(data, Path(tmp), limits, only=InputFormat.DICOM)
        groups: dict[str, list[_Instance]] = defaultdict(list)
        frames = 0
        for member in members:
            header = _read_header(member.path)
            if header is None:
                continue
            instances = _instances_of(header, member.path, member.index, limits, frames)
            frames += len(instances)
            groups[_series_uid(header)].extend(instances)
        if not groups:
            raise NoDicomFoundError(
                "the zip holds no DICOM Part-10 object (a file starting with the 128-byte "
                "preamble and 'DICM')"
            )
        return _build_series(groups, selection)


def _read_header(source: Path | bytes) -> Dataset | None:
    """Header without pixel data, or None when the source is not DICOM at all."""
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True, force=False)
    except (PydicomInvalidDicomError, EOFError, ValueError, TypeError, KeyError, OSError):
        return None


def _series_uid(header: Dataset) -> str:
    return str(header.get("SeriesInstanceUID", "") or "<no-series-uid>")


def _instances_of(
    header: Dataset, source: Path | bytes, order: int, limits: InputLimits, frames_before: int = 0
) -> list[_Instance]:
    """One record per frame, ordered later. The frame limit is checked before any is made: a
    header may claim 2^31 frames, and a record per claimed frame would exhaust memory before
    the pixel data (which cannot hold them) is ever read. ``frames_before`` counts the frames
    of the upload's earlier files."""
    rows, columns = _header_int(header, "Rows", 0), _header_int(header, "Columns", 0)
    n_frames = _header_int(header, "NumberOfFrames", 1)
    if n_frames < 1:
        raise InvalidDicomError(f"the DICOM attribute NumberOfFrames is {n_frames}, not >= 1")
    if frames_before + n_frames > limits.max_dicom_frames:
        raise InputTooLargeError(
            f"the DICOM upload holds more than {limits.max_dicom_frames} slices "
            "(BRAINMRI_MAX_DICOM_FRAMES); send a smaller series",
            code="too_many_frames",
        )
    _check_pixel_count(rows, columns, n_frames, _header_int(header, "SamplesPerPixel", 1), limits)
    instance_number = _as_int(_header_value(header, "InstanceNumber"))
    normal = _slice_normal(header)
    base_position = _project(_header_value(header, "ImagePositionPatient"), normal)
    frame_positions = _per_frame_positions(header, normal, n_frames)
    return [
        _Instance(
            source=source,
            frame=frame,
            n_frames=n_frames,
            rows=rows,
            columns=columns,
            instance_number=instance_number,
            position=frame_positions[frame] if frame_positions else base_position,
            order=order * 100_000 + frame,
        )
        for frame in range(n_frames)
    ]


def _slice_normal(header: Dataset) -> np.ndarray | None:
    orientation = _header_value(header, "ImageOrientationPatient")
    if orientation is None:
        for group in _items(header, "SharedFunctionalGroupsSequence"):
            for plane in _items(group, "PlaneOrientationSequence"):
                orientation = _header_value(plane, "ImageOrientationPatient")
    if orientation is None:
        return None
    try:
        values = np.asarray([float(v) for v in orientation], dtype=np.float64)  # type: ignore[attr-defined]
    except _MALFORMED as exc:
        raise _malformed("ImageOrientationPatient", "six numbers") from exc
    if values.shape != (6,):
        return None
    normal = np.cross(values[:3], values[3:])
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 0 else None


def _project(position: object, normal: np.ndarray | None) -> float | None:
    if position is None or normal is None:
        return None
    try:
        values = np.asarray([float(v) for v in position], dtype=np.float64)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return float(values @ normal) if values.shape == (3,) else None


def _per_frame_positions(header: Dataset, normal: np.ndarray | None, n_frames: int) -> list[float]:
    groups = _items(header, "PerFrameFunctionalGroupsSequence")
    if not groups or len(groups) != n_frames:
        return []
    positions: list[float] = []
    for group in groups:
        planes = _items(group, "PlanePositionSequence")
        position = _header_value(planes[0], "ImagePositionPatient") if planes else None
        value = _project(position, normal)
        if value is None:
            return []
        positions.append(value)
    return positions


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _malformed(keyword: str, expected: str) -> InvalidDicomError:
    return InvalidDicomError(f"the DICOM attribute {keyword} is malformed: expected {expected}")


def _header_value(ds: Dataset, keyword: str) -> object:
    """The value, or None; pydicom converts raw bytes lazily, so a bad US length raises here."""
    try:
        return ds.get(keyword)
    except _MALFORMED as exc:
        raise _malformed(keyword, "a value of its VR") from exc


def _header_int(ds: Dataset, keyword: str, default: int) -> int:
    """A mandatory-looking integer: absent or empty means ``default``, unparseable is an error."""
    value = _header_value(ds, keyword)
    if not value:
        return default
    try:
        return int(value)  # type: ignore[call-overload]
    except _MALFORMED as exc:
        raise _malformed(keyword, "an integer") from exc


def _check_float(ds: Dataset, keyword: str) -> None:
    """Refuse a present but non-numeric (or multi-valued) single-number attribute."""
    value = _header_value(ds, keyword)
    if value is None or value == "":
        return
    try:
        float(value)  # type: ignore[arg-type]
    except _MALFORMED as exc:
        raise _malformed(keyword, "a number") from exc


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    """The items of a sequence attribute; one encoded as anything but a sequence is an error."""
    value = _header_value(ds, keyword)
    if value is None or value == "":
        return []
    if not isinstance(value, DicomSequence):
        raise _malformed(keyword, "a sequence")
    return list(value)


def _build_series(
    groups: dict[str, list[_Instance]], selection: SliceSelection | None
) -> DicomSeries:
    selection = selection or SliceSelection()
    if selection.series_uid is not None:
        if selection.series_uid not in groups:
            raise SeriesNotFoundError("the requested SeriesInstanceUID is not in the input")
        instances = groups[selection.series_uid]
    else:
        instances = max(groups.values(), key=len)
    shapes = {(inst.rows, inst.columns) for inst in instances}
    if len(shapes) != 1:
        raise InconsistentSeriesError(
            f"slices of the series have different shapes: {sorted(shapes)}"
        )
    rows, columns = shapes.pop()
    if rows == 0 or columns == 0:
        raise DicomPixelDataError("the DICOM object declares no image (Rows/Columns missing)")
    ordered = _order(instances)
    chosen = selection.indices(len(ordered))
    slices, first = _decode_selected([ordered[i] for i in chosen])
    log.debug("read DICOM series: %d slices, scoring indices %s", len(ordered), chosen)
    return DicomSeries(
        slices=slices,
        info=SeriesInfo(
            modality=_enumerated(first, "Modality"),
            rows=rows,
            columns=columns,
            n_slices=len(ordered),
            n_series_in_input=len(groups),
            selected_indices=tuple(chosen),
            pixel_spacing_mm=_spacing(first),
            slice_thickness_mm=_as_float(first.get("SliceThickness")),
            photometric=_enumerated(first, "PhotometricInterpretation") or "MONOCHROME2",
            windowed=_has_voi(first),
        ),
    )


def _order(instances: list[_Instance]) -> list[_Instance]:
    if all(inst.position is not None for inst in instances):
        return sorted(instances, key=lambda i: (i.position, i.instance_number or 0, i.order))
    if all(inst.instance_number is not None for inst in instances):
        return sorted(instances, key=lambda i: (i.instance_number, i.order))
    return sorted(instances, key=lambda i: i.order)


def _decode_selected(selected: list[_Instance]) -> tuple[list[np.ndarray], Dataset]:
    """Decode, rescale and window the chosen frames; returns them and one full dataset."""
    raw: list[np.ndarray] = []
    datasets: list[Dataset] = []
    cache: dict[int, tuple[Dataset, np.ndarray]] = {}
    for inst in selected:
        key = id(inst.source)
        if key not in cache:
            cache[key] = _load_pixels(inst.source)
        ds, pixels = cache[key]
        frame = pixels[inst.frame] if inst.n_frames > 1 else pixels
        raw.append(frame)
        datasets.append(ds)
    first = datasets[0]
    photometric = str(first.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if _header_int(first, "SamplesPerPixel", 1) > 1:
        grey = [minmax_scale(frame.astype(np.float64) @ _BT601.astype(np.float64)) for frame in raw]
        return grey, first
    rescaled = [_modality(frame, ds) for frame, ds in zip(raw, datasets, strict=True)]
    if _has_voi(first):
        scaled = [_window(frame, ds) for frame, ds in zip(rescaled, datasets, strict=True)]
    else:
        stacked = robust_scale(np.stack(rescaled))
        scaled = list(stacked)
    if photometric == "MONOCHROME1":
        scaled = [1.0 - s for s in scaled]
    return [np.ascontiguousarray(s, dtype=np.float32) for s in scaled], first


def _check_pixel_count(
    rows: int, columns: int, frames: int, samples: int, limits: InputLimits
) -> None:
    """Refuse what the header says would decode to too many pixels, before decoding any.

    Compressed pixel data (RLE, JPEG) can be tiny and still declare a huge image; decoding
    first and checking after is exactly what a decompression bomb counts on.
    """
    if rows * columns > limits.max_pixels:
        raise InputTooLargeError(
            f"the DICOM image is {columns}x{rows} = {rows * columns} pixels per frame; "
            f"the limit is {limits.max_pixels} (BRAINMRI_MAX_IMAGE_PIXELS)",
            code="too_many_pixels",
        )
    total = rows * columns * max(frames, 1) * max(samples, 1)
    if total > limits.max_dicom_object_pixels:
        raise InputTooLargeError(
            f"the DICOM object decodes to {total} values ({frames} frame(s) of {columns}x{rows}"
            f" x {samples} sample(s)); the limit is {limits.max_dicom_object_pixels} "
            "(BRAINMRI_MAX_DICOM_OBJECT_PIXELS)",
            code="too_many_pixels",
        )


def _load_pixels(source: Path | bytes) -> tuple[Dataset, np.ndarray]:
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        ds = pydicom.dcmread(fp, force=False)
    except (PydicomInvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise InvalidDicomError(f"cannot read DICOM object: {exc}") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomPixelDataError("the DICOM object has no pixel data")
    try:
        pixels = ds.pixel_array
    except (*_MALFORMED, RuntimeError, NotImplementedError) as exc:
        raise DicomPixelDataError(f"cannot decode DICOM pixel data: {exc}") from exc
    return ds, np.asarray(pixels)


def _modality(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> modality values; a malformed rescale or Modality LUT is the client's."""
    _check_float(ds, "RescaleSlope")
    _check_float(ds, "RescaleIntercept")
    try:
        return apply_modality_lut(frame, ds).astype(np.float64)
    except _MALFORMED as exc:  # the rescale values are checked above: this is the LUT
        raise _malformed("ModalityLUTSequence", "a LUT Descriptor and LUT Data") from exc


def _has_voi(ds: Dataset) -> bool:
    return ("WindowCenter" in ds and "WindowWidth" in ds) or "VOILUTSequence" in ds


def _window(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Map modality values to [0, 1] with the object's first VOI window or VOI LUT."""
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = _first_float(ds.WindowCenter)
        width = _first_float(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        if center is not None and width is not None and width > 0:
            if function == "SIGMOID":
                return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
            if function == "LINEAR_EXACT":
                low, high = center - width / 2.0, center + width / 2.0
            else:  # LINEAR, PS3.3 C.11.2.1.2.1
                low = center - 0.5 - (width - 1.0) / 2.0
                high = center - 0.5 + (width - 1.0) / 2.0
            if high <= low:
                return (values > center).astype(np.float64)
            return np.clip((values - low) / (high - low), 0.0, 1.0)
    try:
        windowed = apply_voi_lut(values, ds, index=0)
    except _MALFORMED as exc:
        raise _malformed("VOILUTSequence", "a LUT Descriptor and LUT Data") from exc
    return minmax_scale(np.asarray(windowed, dtype=np.float64))


def _first_float(value: object) -> float | None:
    if isinstance(value, (MultiValue, list, tuple)):
        value = value[0] if len(value) else None
    return _as_float(value)


def _as_float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    spacing = ds.get("PixelSpacing")
    if spacing is None or len(spacing) != 2:
        return None
    first, second = _as_float(spacing[0]), _as_float(spacing[1])
    return (first, second) if first is not None and second is not None else None


def _enumerated(ds: Dataset, keyword: str) -> str | None:
    """A coded value that is one the standard defines, else None: what reaches a job result is
    never free text from the upload, even before de-identification has run."""
    value = str(ds.get(keyword, "") or "").strip()
    return value if value in ENUMERATED_VALUES[keyword] else None
