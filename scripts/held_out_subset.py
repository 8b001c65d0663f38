#!/usr/bin/env python3
"""Keep the validation and test rows of a split that have no near twin, mirrored or flipped
included, in the splits a model learnt from: the honest held-out subset of an older split.

Research/triage only - not a medical device.

Why: splits built before 2026-12-06 grouped near duplicates only as stored, so mirrored and
flipped copies of one slice (hundreds of them in the public data) could sit in train and test
at once. A model trained with flips has in effect seen such a test image. This script finds,
with the builder's own thumbnails and the same correlation threshold, every validation row
with a twin in train and every test row with a twin in train or validation, and writes the
rest, with flip-aware group ids, as manifests that ``brainmri eval`` and ``brainmri compare``
read::

    brainmri dataset build --root DATA --out runs/split-seed42 --seed 42 --split-version 1
    python scripts/held_out_subset.py runs/split-seed42 --out runs/split-seed42-held-out
    brainmri eval --data runs/split-seed42-held-out/test.csv --out runs/eval-held-out

New splits need none of this: the builder now groups flipped copies itself.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from brainmri.data.builder import (
    DEFAULT_NEAR_DUP_THRESHOLD,
    LabelledPath,
    fingerprint_images,
    near_duplicate_groups,
)

# Each split is checked against the ones the model used before it was scored.
LEARNT_FROM = {"val": ("train",), "test": ("train", "val")}


def read_rows(split_dir: Path) -> dict[str, list[dict[str, str]]]:
    rows = {}
    for split in ("train", "val", "test"):
        with (split_dir / f"{split}.csv").open(newline="") as handle:
            rows[split] = list(csv.DictReader(handle))
    return rows


def held_out(
    rows: dict[str, list[dict[str, str]]], threshold: float
) -> dict[str, list[dict[str, str]]]:
    """Per checked split, the rows whose flip-aware group holds no row of a split it learnt
    from."""
    order = [(split, row) for split in ("train", "val", "test") for row in rows[split]]
    records = fingerprint_images(
        [LabelledPath(Path(row["path"]), row["class_name"]) for _, row in order], progress=True
    )
    unreadable = [str(record.path) for record in records if record.thumbnail is None]
    if unreadable:
        raise SystemExit(f"error: {len(unreadable)} unreadable file(s), e.g. {unreadable[0]}")
    groups, _ = near_duplicate_groups(
        np.stack([record.thumbnail for record in records]),
        threshold,  # type: ignore[misc]
    )
    splits_of_group: dict[int, set[str]] = {}
    for (split, _), group in zip(order, groups, strict=True):
        splits_of_group.setdefault(group, set()).add(split)
    kept: dict[str, list[dict[str, str]]] = {split: [] for split in LEARNT_FROM}
    for (split, row), group in zip(order, groups, strict=True):
        if split in LEARNT_FROM and not splits_of_group[group] & set(LEARNT_FROM[split]):
            # The flip-aware group, so that a bootstrap over groups draws mirrored copies
            # within the subset together.
            kept[split].append({**row, "group_id": f"f{group:05d}"})
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split_dir", type=Path, help="a builder folder with train/val/test.csv")
    parser.add_argument("--out", type=Path, required=True, help="folder for val.csv, test.csv")
    parser.add_argument("--threshold", type=float, default=DEFAULT_NEAR_DUP_THRESHOLD)
    args = parser.parse_args(argv)
    rows = read_rows(args.split_dir)
    kept = held_out(rows, args.threshold)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, split_rows in kept.items():
        with (args.out / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[split][0]))
            writer.writeheader()
            writer.writerows(split_rows)
        print(
            f"{split}: {len(split_rows)} of {len(rows[split])} rows have no near twin "
            f"(flips included) in {' or '.join(LEARNT_FROM[split])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
