#!/usr/bin/env python3
"""Write head-inverted copies of a manifest's slices: a probe of the MR-sequence shortcut.

Research/triage only - not a medical device.

Why: in the public data the classes differ by MR sequence as well as by pathology
(``no_tumor`` mostly T2/FLAIR, tumours T1; MODEL_CARD.md). Inverting the head's intensities
(``x -> 1 - x``, the air left dark; the trainer's ``--invert_prob`` augmentation) roughly swaps
the two looks while leaving the anatomy and the lesion where they are. A model that reads the
pathology should classify the inverted copies about as well as the originals; a model that
reads the sequence will call inverted ``no_tumor`` slices tumours and inverted tumours
``no_tumor``. Score any model on the copies with ``brainmri eval``::

    python scripts/invert_slices.py runs/split-seed42/val.csv --out runs/val-inverted
    brainmri eval --data runs/val-inverted/val.csv --model BUNDLE --out runs/eval-inverted

The copies are 8-bit PNGs at the original size in class-named folders, written as the data
pack writes its JPEGs (:func:`brainmri.data.copies.write_copies`); ``OUT/<name>.csv`` keeps
each slice's class, near-duplicate group and other columns, so ``brainmri compare`` and the
group bootstrap work on them too.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brainmri.data.copies import CopiesWritten, write_copies
from brainmri.training.augment import invert_head


def encode_inverted(pixels: np.ndarray) -> bytes:
    """One slice, head-inverted at its own size, as an 8-bit grey PNG (lossless)."""
    inverted = invert_head(torch.from_numpy(np.clip(pixels, 0.0, 1.0))[None])[0].numpy()
    buffer = io.BytesIO()
    Image.fromarray(np.round(inverted * 255.0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def invert_manifest(manifest: Path, out: Path, workers: int = 2) -> CopiesWritten:
    """Write the inverted copies and ``out/<manifest stem>.csv``; nothing half-written."""
    return write_copies(
        manifest, out, encode_inverted, suffix="png", workers=workers, what="inverted copies"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="a builder CSV (path, class_name, group_id)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the copies")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    args = parser.parse_args(argv)
    copies = invert_manifest(args.manifest, args.out, args.workers)
    for reason in copies.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"wrote {copies.n} inverted slices and {copies.table}")
    return 0 if copies.n else 1


if __name__ == "__main__":
    sys.exit(main())
