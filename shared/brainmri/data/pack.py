"""Compact, relocatable copies of a manifest's images, for training on another machine.

Why: a GPU host reached through a narrow link (a rented or lent machine) should not need the
full-resolution data set. Training only ever sees a slice after the project's geometry step
(:func:`brainmri.preprocess.square_resize`, letterbox then resize), at the cache size
``round(img_size * cache_scale)`` for training and at ``img_size`` for validation. A pack
stores exactly that, once, as an 8-bit grey JPEG: a trainer reading a pack made at its own
cache size rebuilds the same cache without resampling again (a square image resized to its
own size is unchanged), so the only difference from the originals is the JPEG re-encoding,
about one grey level on average at quality 90 (measured on the real slices).

Layout of ``OUT``: ``OUT/<name>.csv`` (paths relative to ``OUT``, every other column of the
source manifest kept, plus ``source_sha256``), ``OUT/<name>/<class>/<row>_<stem>.jpg`` and
``OUT/pack.json`` (per manifest: size, quality, counts and the fingerprint of the source
files, so a model trained on the pack can be traced to the original data).
"""

from __future__ import annotations

import functools
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from brainmri.data.copies import CopiesWritten, write_copies
from brainmri.errors import DatasetError
from brainmri.imaging.limits import InputLimits
from brainmri.preprocess import PreprocessConfig, square_resize, to_uint8

log = logging.getLogger(__name__)

PACK_INDEX = "pack.json"


@dataclass(frozen=True)
class PackSummary:
    """What one manifest's pack holds: the copies written, and how they were encoded."""

    copies: CopiesWritten
    source: str
    size: int
    quality: int
    resize: str


def _encode(pixels: np.ndarray, preprocess: PreprocessConfig, quality: int) -> bytes:
    """The trainer's cache step (square_resize, then to_uint8), saved as a grey JPEG."""
    grey = to_uint8(square_resize(pixels, preprocess.img_size, preprocess)[0]).numpy()
    buffer = io.BytesIO()
    Image.fromarray(grey, "L").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def pack_manifest(
    manifest: Path,
    out_dir: Path,
    *,
    size: int,
    quality: int = 90,
    resize: str = "letterbox",
    workers: int = 2,
    progress: bool = True,
    limits: InputLimits | None = None,
) -> PackSummary:
    """Write ``out_dir/<manifest stem>.csv`` and its images; refuse to replace an existing pack.

    Rows whose file cannot be read are skipped and listed; nothing is half-written
    (:func:`brainmri.data.copies.write_copies` does the writing).
    """
    manifest = Path(manifest)
    out_dir = Path(out_dir)
    if not 32 <= size <= 2048:
        raise DatasetError(f"pack size must be 32-2048 px, got {size}")
    if not 1 <= quality <= 100:
        raise DatasetError(f"JPEG quality must be 1-100, got {quality}")
    preprocess = PreprocessConfig(img_size=size, resize=resize)
    copies = write_copies(
        manifest,
        out_dir,
        functools.partial(_encode, preprocess=preprocess, quality=quality),
        suffix="jpg",
        workers=workers,
        progress=progress,
        what="a pack",
        limits=limits,
    )
    if copies.skipped:
        log.warning(
            "%d unreadable file(s) left out of the pack, e.g. %s",
            len(copies.skipped),
            copies.skipped[0],
        )
    summary = PackSummary(
        copies=copies, source=str(manifest), size=size, quality=quality, resize=resize
    )
    _record(out_dir, summary)
    return summary


def _record(out_dir: Path, summary: PackSummary) -> None:
    """Add or replace this manifest's entry in ``OUT/pack.json``."""
    index_path = out_dir / PACK_INDEX
    index = json.loads(index_path.read_text()) if index_path.is_file() else {"manifests": {}}
    copies = summary.copies
    index["manifests"][copies.name] = {
        "name": copies.name,
        "source": summary.source,
        "size": summary.size,
        "quality": summary.quality,
        "resize": summary.resize,
        "counts": copies.counts,
        "bytes": copies.bytes,
        "source_fingerprint": copies.source_fingerprint,
        "skipped": copies.skipped,
        "n": copies.n,
    }
    index_path.write_text(json.dumps(index, indent=2) + "\n")
