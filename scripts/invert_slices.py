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
    brainmri eval --data runs/val-inverted/manifest.csv --model BUNDLE --out runs/eval-inverted

The copies are 8-bit PNGs in class-named folders; ``manifest.csv`` keeps each slice's class and
near-duplicate group, so ``brainmri compare`` and the group bootstrap work on them too.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brainmri.data.manifest import read_manifest
from brainmri.imaging.inputs import read_raster_or_reason
from brainmri.progress import progress_bar
from brainmri.training.augment import invert_head


def invert_manifest(manifest: Path, out: Path) -> tuple[int, list[str]]:
    """Write the inverted copies and ``out/manifest.csv``; returns (written, failures)."""
    written, failures = 0, []
    out.mkdir(parents=True, exist_ok=True)
    with (out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "class_name", "group_id", "source"])
        for index, sample in enumerate(progress_bar(read_manifest(manifest), unit="img")):
            outcome = read_raster_or_reason(sample.path)
            if isinstance(outcome, str):
                failures.append(outcome)
                continue
            pixels = torch.from_numpy(np.clip(outcome[0], 0.0, 1.0))[None]
            inverted = invert_head(pixels)[0].numpy()
            relative = Path(sample.class_name) / f"{index:05d}-{sample.path.stem}.png"
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(inverted * 255.0).astype(np.uint8)).save(out / relative)
            writer.writerow(
                [relative.as_posix(), sample.class_name, sample.group_id or "", sample.path]
            )
            written += 1
    return written, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="a builder CSV (path, class_name, group_id)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the copies")
    args = parser.parse_args(argv)
    written, failures = invert_manifest(args.manifest, args.out)
    for reason in failures:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"wrote {written} inverted slices and {args.out / 'manifest.csv'}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
