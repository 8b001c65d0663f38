"""Dataset builder: class folders -> duplicate-aware, class-stratified train/val/test CSVs.

Public MRI collections repeat images: byte-identical copies and near-identical re-exports
(resized, re-encoded, slightly cropped). A split that puts one copy in training and its twin
in test reports accuracy the model does not have. So:

1. every file is hashed (sha256) and decoded to a 32x32 grey thumbnail;
2. byte-identical copies are dropped (one kept); copies filed under *different* classes are
   dropped altogether, since their label is unknowable;
3. images whose thumbnails correlate at or above ``near_dup_threshold`` are grouped
   (union-find, so chains form one group);
4. whole groups are assigned to splits, class by class, so no group ever straddles splits.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from brainmri.concurrency import bounded_map
from brainmri.data.labels import CLASS_NAMES, binary_label, canonical_class
from brainmri.errors import DatasetError, InputError
from brainmri.imaging.inputs import raster_pixels, read_file_limited
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.sandbox import DecodeSandbox, run_decoder
from brainmri.progress import progress_bar

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CSV_COLUMNS = ("path", "class_name", "multiclass_label", "binary_label", "group_id")
THUMB_SIZE = 32
DEFAULT_NEAR_DUP_THRESHOLD = 0.99
# 1: near duplicates as stored, seeded shuffle (splits before 2026-12-06: mirrored copies
# leaked across them). 2: mirrored/flipped copies grouped too, groups placed in hash order.
SPLIT_VERSIONS = (1, 2)


@dataclass(frozen=True, slots=True)
class LabelledPath:
    path: Path
    class_name: str


@dataclass(slots=True)
class ImageRecord:
    path: Path
    class_name: str
    sha256: str = ""
    thumbnail: np.ndarray | None = None  # standardised, unit-norm vector
    error: str | None = None


@dataclass(slots=True)
class BuildSummary:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    n_files: int = 0
    n_kept: int = 0
    n_groups: int = 0
    near_duplicate_groups: int = 0
    images_in_near_duplicate_groups: int = 0
    # Pairs above the threshold by the orientation that first linked them (as stored first).
    near_duplicate_pairs: dict[str, int] = field(default_factory=dict)
    exact_duplicates_dropped: int = 0
    conflicting_label_copies_dropped: int = 0
    unlabelled_files: int = 0
    unreadable: list[str] = field(default_factory=list)
    fingerprint: str = ""
    near_dup_threshold: float = DEFAULT_NEAR_DUP_THRESHOLD
    split_version: int = 2
    seed: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def table(self) -> str:
        """Counts per split and class, then the duplicate figures, as aligned text."""
        header = f"{'split':<6}" + "".join(f"{name:>12}" for name in CLASS_NAMES) + f"{'total':>8}"
        lines = [header]
        for split in SPLITS:
            row = self.counts.get(split, {})
            cells = "".join(f"{row.get(name, 0):>12}" for name in CLASS_NAMES)
            lines.append(f"{split:<6}{cells}{sum(row.values()):>8}")
        lines += [
            f"files scanned: {self.n_files}, kept: {self.n_kept}, groups: {self.n_groups}",
            f"exact duplicates dropped: {self.exact_duplicates_dropped}; copies with conflicting "
            f"labels dropped: {self.conflicting_label_copies_dropped}",
            f"near-duplicate groups (corr >= {self.near_dup_threshold}, "
            f"{'flips included' if self.split_version >= 2 else 'as stored only'}): "
            f"{self.near_duplicate_groups} holding {self.images_in_near_duplicate_groups} images",
            "near-duplicate pairs by orientation: "
            + (
                ", ".join(f"{name} {count}" for name, count in self.near_duplicate_pairs.items())
                or "none"
            ),
            f"unreadable files: {len(self.unreadable)}; files outside class folders: "
            f"{self.unlabelled_files}",
            f"split version {self.split_version} (seed {self.seed}); "
            f"data fingerprint: {self.fingerprint}",
        ]
        return "\n".join(lines)


def scan_class_folders(roots: Sequence[Path]) -> tuple[list[LabelledPath], int]:
    """Files under class-named folders (nearest matching ancestor wins), plus the unlabelled count.

    Hidden files are ignored. Content type is *not* judged here: decoding decides.
    """
    found: list[LabelledPath] = []
    unlabelled = 0
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root} is not a folder")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts):
                continue
            label = next(
                (
                    canonical_class(part)
                    for part in reversed(relative.parts[:-1])
                    if canonical_class(part)
                ),
                None,
            )
            if label is None and canonical_class(root.name):
                label = canonical_class(root.name)
            if label is None:
                unlabelled += 1
                continue
            found.append(LabelledPath(path, label))
    return found, unlabelled


def _fingerprint_one(
    item: LabelledPath, limits: InputLimits, sandbox: DecodeSandbox | None
) -> ImageRecord:
    record = ImageRecord(path=item.path, class_name=item.class_name)
    try:
        data = read_file_limited(item.path, limits)
        record.sha256 = hashlib.sha256(data).hexdigest()
        pixels = run_decoder(sandbox, raster_pixels, data, limits)
    except (InputError, OSError) as exc:
        record.error = str(exc)
        return record
    thumb = (
        F.interpolate(
            torch.from_numpy(pixels)[None, None], size=(THUMB_SIZE, THUMB_SIZE), mode="area"
        )
        .flatten()
        .double()
        .numpy()
    )
    thumb -= thumb.mean()
    norm = float(np.linalg.norm(thumb))
    record.thumbnail = (
        (thumb / norm).astype(np.float32) if norm > 0 else np.zeros_like(thumb, np.float32)
    )
    return record


def fingerprint_images(
    items: Sequence[LabelledPath],
    *,
    workers: int = 2,
    progress: bool = True,
    limits: InputLimits | None = None,
    sandbox: DecodeSandbox | None = None,
) -> list[ImageRecord]:
    """Hash and thumbnail every file; ``sandbox`` decodes them there (the train job: its
    files come from users), None in this process (``brainmri dataset build``)."""
    limits = limits or InputLimits()
    return list(
        progress_bar(
            bounded_map(lambda item: _fingerprint_one(item, limits, sandbox), items, workers, 64),
            total=len(items),
            desc="hash+thumbnail",
            unit="img",
            disable=not progress,
        )
    )


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def orientations(thumbnails: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The thumbnails as stored and mirrored left-right, upside down and turned 180 degrees.

    The public brain MRI data holds mirrored copies of hundreds of slices (augmented copies
    carried over from its source sets). Compared only as stored, a slice and its mirror image
    correlate far below the threshold, so they landed in different splits: about 43% of the
    old test split had a mirrored twin in train, which a model trained with flips has in
    effect seen. Centring and scaling do not change under a flip, so every variant stays a
    unit vector and the dot product is still the Pearson correlation.
    """
    grid = thumbnails.reshape(-1, THUMB_SIZE, THUMB_SIZE)
    flipped = {
        "mirrored": grid[:, :, ::-1],
        "upside down": grid[:, ::-1, :],
        "turned 180": grid[:, ::-1, ::-1],
    }
    return [("as stored", thumbnails)] + [
        (name, np.ascontiguousarray(view).reshape(thumbnails.shape))
        for name, view in flipped.items()
    ]


def near_duplicate_groups(
    thumbnails: np.ndarray, threshold: float, chunk: int = 1024, *, flips: bool = True
) -> tuple[list[int], dict[str, int]]:
    """Group index per row: rows whose Pearson correlation >= threshold, as stored or with one
    of them flipped (:func:`orientations`), share a group. Also returns, per orientation, how
    many pairs were linked that way and not as stored (what the flips add).

    ``flips=False`` compares as stored only: the grouping of splits built before 2026-12-06,
    kept to reproduce them (the shipped model's split), not for new ones."""
    n = thumbnails.shape[0]
    groups = _UnionFind(n)
    linked: set[tuple[int, int]] = set()
    added: dict[str, int] = {}
    variants = orientations(thumbnails) if flips else [("as stored", thumbnails)]
    for name, variant in variants:
        new_pairs = 0
        for start in range(0, n, chunk):
            block = thumbnails[start : start + chunk] @ variant.T
            rows, cols = np.nonzero(block >= threshold)
            for row, col in zip(rows + start, cols, strict=True):
                pair = (int(min(row, col)), int(max(row, col)))
                if pair[0] != pair[1] and pair not in linked:
                    linked.add(pair)
                    new_pairs += 1
                    groups.union(*pair)
        added[name] = new_pairs
    return [groups.find(i) for i in range(n)], added


def dataset_fingerprint(pairs: Iterable[tuple[str, str]]) -> str:
    """Order-independent digest of (sha256, class) pairs: changes iff the labelled data does."""
    digest = hashlib.sha256()
    for sha, label in sorted(set(pairs)):
        digest.update(f"{sha}:{label}\n".encode())
    return digest.hexdigest()


def deduplicate(records: list[ImageRecord]) -> tuple[list[ImageRecord], int, int]:
    """Keep one copy per sha256; drop every copy of content filed under two classes."""
    by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_hash[record.sha256].append(record)
    kept: list[ImageRecord] = []
    exact_dropped = conflicting = 0
    for copies in by_hash.values():
        if len({copy.class_name for copy in copies}) > 1:
            conflicting += len(copies)
            continue
        copies.sort(key=lambda record: str(record.path))
        kept.append(copies[0])
        exact_dropped += len(copies) - 1
    kept.sort(key=lambda record: str(record.path))
    return kept, exact_dropped, conflicting


def stratified_group_split(
    labels: Sequence[str],
    groups: Sequence[int],
    *,
    val_frac: float,
    test_frac: float,
    seed: int,
    keys: Sequence[str] | None = None,
) -> list[str]:
    """Split name per item; whole groups move together, stratified by the group's majority class.

    Within each class, groups fill test, then validation, to their share of the images, in an
    order that is, with ``keys`` (one per item; the builder passes each image's sha256), a
    hash of the seed and the group's smallest key, and without them a seeded shuffle (the
    builder's split version 1).

    Why hash order: a scheduled retrain rebuilds the split of a grown dataset and its
    promotion gate scores the production model on the new test split. A reshuffle put
    hundreds of the production model's training images there (it scores macro-F1 1.000 on its
    own training images against 0.977 on its test split), which kept candidates of equal
    quality out. In hash order a group keeps its place when images are added: boundaries
    move a little, so a group may pass between test and validation or between validation and
    train, but a training group cannot reach test unless the dataset more than doubles.
    """
    if val_frac < 0 or test_frac < 0 or val_frac + test_frac >= 1:
        raise DatasetError("val and test fractions must be >= 0 and sum to less than 1")
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    by_class: dict[str, list[int]] = defaultdict(list)
    for group, indices in members.items():
        majority = Counter(labels[i] for i in indices).most_common(1)[0][0]
        by_class[majority].append(group)
    rng = np.random.default_rng(seed)
    assignment: dict[int, str] = {}
    for class_name in sorted(by_class):
        class_groups = sorted(by_class[class_name])
        if keys is None:
            rng.shuffle(class_groups)
        else:
            class_groups.sort(key=lambda group: _hash_position(seed, members[group], keys))
        total = sum(len(members[g]) for g in class_groups)
        targets = {
            "test": _target(total, test_frac, len(class_groups)),
            "val": _target(total, val_frac, len(class_groups)),
        }
        filled = {"test": 0, "val": 0}
        for group in class_groups:
            split = next((s for s in ("test", "val") if filled[s] < targets[s]), "train")
            assignment[group] = split
            if split != "train":
                filled[split] += len(members[group])
    return [assignment[group] for group in groups]


def _hash_position(seed: int, indices: Sequence[int], keys: Sequence[str]) -> bytes:
    """A group's place in hash order: the digest of the seed and its smallest member key."""
    return hashlib.sha256(f"{seed}:{min(keys[i] for i in indices)}".encode()).digest()


def _target(total: int, fraction: float, n_groups: int) -> int:
    if fraction <= 0:
        return 0
    wanted = round(total * fraction)
    return max(wanted, 1) if n_groups >= 3 else wanted


def build_dataset(
    roots: Sequence[Path],
    out_dir: Path,
    *,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    seed: int = 42,
    near_dup_threshold: float = DEFAULT_NEAR_DUP_THRESHOLD,
    workers: int = 2,
    progress: bool = True,
    split_version: int = 2,
) -> BuildSummary:
    """Scan, deduplicate, group and split; write ``train/val/test.csv`` and a summary JSON."""
    items, unlabelled = scan_class_folders(roots)
    return build_dataset_from_items(
        items,
        out_dir,
        val_frac=val_frac,
        test_frac=test_frac,
        seed=seed,
        near_dup_threshold=near_dup_threshold,
        workers=workers,
        progress=progress,
        unlabelled=unlabelled,
        split_version=split_version,
    )


def build_dataset_from_items(
    items: Sequence[LabelledPath],
    out_dir: Path,
    *,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    seed: int = 42,
    near_dup_threshold: float = DEFAULT_NEAR_DUP_THRESHOLD,
    workers: int = 2,
    progress: bool = True,
    unlabelled: int = 0,
    split_version: int = 2,
    sandbox: DecodeSandbox | None = None,
) -> BuildSummary:
    """The builder for labelled files that are already known (e.g. from a manifest).

    ``split_version`` 2 (the default since 2026-12-06) groups mirrored and flipped copies too
    and fills the splits in hash order (:func:`stratified_group_split`); 1 is the earlier
    builder (groups as stored, seeded shuffle), kept only to rebuild splits made with it.
    """
    if split_version not in SPLIT_VERSIONS:
        raise DatasetError(f"split_version must be one of {SPLIT_VERSIONS}, got {split_version}")
    if not items:
        raise DatasetError(
            "no images found under class-named folders "
            f"(expected folders like {', '.join(CLASS_NAMES)} or their aliases)"
        )
    records = fingerprint_images(items, workers=workers, progress=progress, sandbox=sandbox)
    readable = [record for record in records if record.error is None]
    summary = BuildSummary(
        n_files=len(records),
        unlabelled_files=unlabelled,
        seed=seed,
        near_dup_threshold=near_dup_threshold,
        split_version=split_version,
        unreadable=[f"{record.path}: {record.error}" for record in records if record.error],
    )
    kept, summary.exact_duplicates_dropped, summary.conflicting_label_copies_dropped = deduplicate(
        readable
    )
    if not kept:
        raise DatasetError("no readable images remain after removing duplicates")
    thumbs = np.stack([record.thumbnail for record in kept])  # type: ignore[misc]
    group_roots, pairs_by_orientation = near_duplicate_groups(
        thumbs, near_dup_threshold, flips=split_version >= 2
    )
    summary.near_duplicate_pairs = pairs_by_orientation
    sizes = Counter(group_roots)
    summary.n_kept = len(kept)
    summary.n_groups = len(sizes)
    summary.near_duplicate_groups = sum(1 for size in sizes.values() if size > 1)
    summary.images_in_near_duplicate_groups = sum(size for size in sizes.values() if size > 1)
    splits = stratified_group_split(
        [record.class_name for record in kept],
        group_roots,
        val_frac=val_frac,
        test_frac=test_frac,
        seed=seed,
        keys=[record.sha256 for record in kept] if split_version >= 2 else None,
    )
    summary.fingerprint = dataset_fingerprint((r.sha256, r.class_name) for r in kept)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    group_names = {root: f"g{rank:05d}" for rank, root in enumerate(sorted(sizes))}
    rows_by_split: dict[str, list[dict[str, object]]] = {split: [] for split in SPLITS}
    for record, root, split in zip(kept, group_roots, splits, strict=True):
        rows_by_split[split].append(
            {
                "path": str(record.path.resolve()),
                "class_name": record.class_name,
                "multiclass_label": CLASS_NAMES.index(record.class_name),
                "binary_label": binary_label(record.class_name),
                "group_id": group_names[root],
            }
        )
    for split, rows in rows_by_split.items():
        write_manifest(out_dir / f"{split}.csv", rows)
        summary.counts[split] = dict(Counter(str(row["class_name"]) for row in rows))
    (out_dir / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return summary


def write_manifest(path: Path, rows: Iterable[dict[str, object]]) -> None:
    with Path(path).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
