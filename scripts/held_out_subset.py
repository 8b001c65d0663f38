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

New splits need none of this for their own model: the builder now groups flipped copies
itself. To compare a model trained on a new split with one trained on an old split, give the
old split with ``--also-learnt-from``: its train and validation rows then count as learnt from
too, and what is kept is fair to both models (a paired ``brainmri compare`` on it)::

    python scripts/held_out_subset.py runs/split-v2-seed42 --out runs/fair-to-both \
        --also-learnt-from runs/split-seed42
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


def read_rows(
    split_dir: Path, splits: tuple[str, ...] = ("train", "val", "test"), prefix: str = ""
) -> dict[str, list[dict[str, str]]]:
    rows = {}
    for split in splits:
        with (split_dir / f"{split}.csv").open(newline="") as handle:
            rows[prefix + split] = list(csv.DictReader(handle))
    return rows


def held_out(
    rows: dict[str, list[dict[str, str]]],
    threshold: float,
    learnt_from: dict[str, tuple[str, ...]] = LEARNT_FROM,
) -> dict[str, list[dict[str, str]]]:
    """Per checked split, the rows whose flip-aware group holds no row of a split it learnt
    from."""
    order = [(split, row) for split, split_rows in rows.items() for row in split_rows]
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
    kept: dict[str, list[dict[str, str]]] = {split: [] for split in learnt_from}
    for (split, row), group in zip(order, groups, strict=True):
        if split in learnt_from and not splits_of_group[group] & set(learnt_from[split]):
            # The flip-aware group, so that a bootstrap over groups draws mirrored copies
            # within the subset together.
            kept[split].append({**row, "group_id": f"f{group:05d}"})
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split_dir", type=Path, help="a builder folder with train/val/test.csv")
    parser.add_argument("--out", type=Path, required=True, help="folder for val.csv, test.csv")
    parser.add_argument("--threshold", type=float, default=DEFAULT_NEAR_DUP_THRESHOLD)
    parser.add_argument(
        "--also-learnt-from",
        type=Path,
        action="append",
        default=[],
        metavar="SPLIT_DIR",
        help="another model's builder folder: its train and val rows count as learnt from too",
    )
    args = parser.parse_args(argv)
    rows = read_rows(args.split_dir)
    learnt_from = dict(LEARNT_FROM)
    for number, other in enumerate(args.also_learnt_from):
        other_rows = read_rows(other, ("train", "val"), prefix=f"{other.name}#{number}:")
        rows.update(other_rows)
        learnt_from = {split: (*seen, *other_rows) for split, seen in learnt_from.items()}
    kept = held_out(rows, args.threshold, learnt_from)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, split_rows in kept.items():
        with (args.out / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[split][0]))
            writer.writeheader()
            writer.writerows(split_rows)
        print(
            f"{split}: {len(split_rows)} of {len(rows[split])} rows have no near twin "
            f"(flips included) in {' or '.join(learnt_from[split])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
