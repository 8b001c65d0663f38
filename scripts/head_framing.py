#!/usr/bin/env python3
"""How much of each slice the head fills, per class: a probe of a framing (source) cue.

Research/triage only - not a medical device.

Why: the public data's classes come from different collections, framed differently. Where
the head fills a different share of the frame from class to class, a whole-slice model can
learn the framing, and so the source, instead of the pathology; ``brainmri train --crop
head`` removes that cue (MODEL_CARD.md has what it cost and gained). The share is the head
box's longer side (:func:`brainmri.preprocess.head_box`, margin included) over the slice's
longer side, which is what the letterbox scales::

    python scripts/head_framing.py runs/split-v2-seed42/train.csv

Unreadable files are counted and left out.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from brainmri.data.manifest import read_manifest
from brainmri.imaging.inputs import read_raster_or_reason
from brainmri.preprocess import head_box
from brainmri.progress import progress_bar


def head_share(pixels: np.ndarray) -> float:
    box = head_box(pixels)
    return max(box.height, box.width) / max(pixels.shape)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="a builder CSV (train.csv, val.csv, ...)")
    args = parser.parse_args(argv)
    shares: dict[str, list[float]] = defaultdict(list)
    unreadable = 0
    for sample in progress_bar(read_manifest(args.manifest), desc="head boxes", unit="img"):
        outcome = read_raster_or_reason(sample.path)
        if isinstance(outcome, str):
            unreadable += 1
            continue
        shares[sample.class_name].append(head_share(outcome[0]))
    print("class         n   head share of the frame: p10   median   p90")
    for name, values in sorted(shares.items()):
        p10, median, p90 = np.percentile(values, [10, 50, 90])
        print(f"{name:<12}{len(values):>5}{p10:>32.2f}{median:>9.2f}{p90:>6.2f}")
    if unreadable:
        print(f"{unreadable} unreadable file(s) left out", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
