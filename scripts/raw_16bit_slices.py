#!/usr/bin/env python3
"""Write 16-bit copies of a manifest's slices, as raw MR exports look: a probe of how the
service scales intensities it is not given a display window for.

Research/triage only - not a medical device.

Why: the training slices are 8-bit exports, already windowed for display. Research pipelines
(NIfTI volumes saved slice by slice) and DICOM objects without a VOI window hand the service
raw 12- to 16-bit values instead, and the brightest few of those (vessels, fat, artefacts) can
lie far above the tissue. Scaled by its own min..max, such a slice puts those few pixels at
white and the whole brain near black. Score a model on copies with and without such pixels::

    python scripts/raw_16bit_slices.py runs/split-v2-seed42/val.csv --out runs/val-16bit
    python scripts/raw_16bit_slices.py runs/split-v2-seed42/val.csv --out runs/val-16bit-hot \
        --outliers 0.001
    brainmri eval --data runs/val-16bit-hot/val.csv --model BUNDLE --out runs/eval-16bit-hot

Each copy is a 16-bit grey PNG at the original size: ``round(x * 4095)`` (the 12-bit range most
MR scanners store). With ``--outliers F``, a fraction ``F`` of the head's pixels (``x > 0.1``)
is set to ``--outlier-level`` times 4095, at places drawn by a generator seeded from the slice
itself, so a copy is the same on every run. ``OUT/<name>.csv`` keeps each slice's class and
near-duplicate group (:func:`brainmri.data.copies.write_copies`), so ``brainmri compare`` and
the group bootstrap work on the copies as on the originals.
"""

from __future__ import annotations

import argparse
import io
import sys
import zlib
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from brainmri.data.copies import CopiesWritten, write_copies

FULL_SCALE = 4095  # 12 bits stored
HEAD_LEVEL = 0.1  # on the [0, 1] slice: brighter than this is the head, not air


def raw_values(pixels: np.ndarray, outliers: float = 0.0, level: float = 4.0) -> np.ndarray:
    """One slice (float in [0, 1]) as raw 16-bit values, with ``outliers`` of its head's pixels
    at ``level`` x full scale; the same slice always gets the same outliers."""
    values = np.round(np.clip(pixels, 0.0, 1.0) * FULL_SCALE).astype(np.uint16)
    if outliers > 0:
        head = np.flatnonzero(pixels.ravel() > HEAD_LEVEL)
        count = min(head.size, max(1, round(outliers * head.size)))
        rng = np.random.default_rng(zlib.crc32(values.tobytes()))
        chosen = rng.choice(head, size=count, replace=False)
        values.ravel()[chosen] = min(round(level * FULL_SCALE), np.iinfo(np.uint16).max)
    return values


def encode_raw_png(pixels: np.ndarray, outliers: float = 0.0, level: float = 4.0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(raw_values(pixels, outliers, level)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_raw_copies(
    manifest: Path, out: Path, *, outliers: float, level: float, workers: int = 2
) -> CopiesWritten:
    """Write the 16-bit copies and ``out/<manifest stem>.csv``; nothing half-written."""
    return write_copies(
        manifest,
        out,
        partial(encode_raw_png, outliers=outliers, level=level),
        suffix="png",
        workers=workers,
        what="16-bit copies",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="a builder CSV (path, class_name, group_id)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the copies")
    parser.add_argument(
        "--outliers",
        type=float,
        default=0.0,
        help="fraction of the head's pixels made very bright (default 0: none)",
    )
    parser.add_argument(
        "--outlier-level",
        type=float,
        default=4.0,
        help="their value, in multiples of the 12-bit full scale (default 4)",
    )
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.outliers < 1.0:
        parser.error("--outliers must be in [0, 1)")
    if args.outlier_level <= 0:
        parser.error("--outlier-level must be positive")
    copies = write_raw_copies(
        args.manifest,
        args.out,
        outliers=args.outliers,
        level=args.outlier_level,
        workers=args.workers,
    )
    for reason in copies.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"wrote {copies.n} 16-bit slices and {copies.table}")
    return 0 if copies.n else 1


if __name__ == "__main__":
    sys.exit(main())
