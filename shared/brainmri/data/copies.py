"""Derived copies of a manifest's images, written so that nothing is ever half-written.

Why: more than one tool turns every slice of a builder manifest into a new image file and a new
manifest that points at it - the data pack for remote training (:mod:`brainmri.data.pack`:
letterboxed JPEGs at the training size) and the sequence-shortcut probe
(``scripts/invert_slices.py``: head-inverted PNGs). They differ only in how one slice is
encoded; reading in parallel, skipping unreadable files, keeping each row's class, group and
other columns, and staging everything so that a failure or Ctrl-C leaves no partial folder
behind are the same job, done here once.

Layout under ``out_dir`` for a manifest ``<name>.csv``: ``<name>.csv`` (paths relative to
``out_dir``, every other column of the source manifest kept, plus ``source_sha256``) and
``<name>/<class>/<row>_<stem>.<suffix>``.
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainmri.concurrency import bounded_map
from brainmri.data.builder import dataset_fingerprint
from brainmri.data.labels import canonical_class
from brainmri.data.manifest import manifest_path
from brainmri.errors import DatasetError
from brainmri.imaging.inputs import read_raster_or_reason
from brainmri.imaging.limits import InputLimits
from brainmri.progress import progress_bar

Encoder = Callable[[np.ndarray], bytes]
"""Turns one decoded slice (float32 in [0, 1], shape (H, W)) into the bytes of its copy."""


@dataclass(frozen=True)
class CopiesWritten:
    """What :func:`write_copies` wrote for one manifest."""

    name: str
    table: Path
    counts: dict[str, int]
    bytes: int
    source_fingerprint: str
    skipped: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(self.counts.values())


def write_copies(
    manifest: Path,
    out_dir: Path,
    encode: Encoder,
    *,
    suffix: str,
    workers: int = 2,
    progress: bool = True,
    what: str = "copies",
    limits: InputLimits | None = None,
) -> CopiesWritten:
    """Write ``out_dir/<manifest stem>.csv`` and one encoded copy per readable row.

    ``what`` names the copies in messages and the progress bar ("a pack", "inverted copies").
    Refuses to replace copies already there. Rows whose file cannot be read are skipped and
    listed, as the trainer's own cache does. Images and CSV are staged under hidden names and
    renamed into place last, so an error leaves ``out_dir`` as it was.
    """
    manifest = Path(manifest)
    out_dir = Path(out_dir)
    name = manifest.stem
    target, table = out_dir / name, out_dir / f"{name}.csv"
    if target.exists() or table.exists():
        raise DatasetError(f"{target} already holds {what} of {name}; choose another --out")
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if "path" not in columns or not rows:
        raise DatasetError(f"{manifest} has no 'path' column or no rows")

    def load(row: dict[str, str]) -> tuple[bytes, str] | str:
        outcome = read_raster_or_reason(manifest_path(manifest, row["path"]), limits)
        if isinstance(outcome, str):
            return outcome
        pixels, sha256 = outcome
        return encode(pixels), sha256

    staging = out_dir / f".{name}.partial"
    staged_table = out_dir / f".{name}.csv.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    written: list[dict[str, str]] = []
    skipped: list[str] = []
    counts: Counter[str] = Counter()
    total_bytes = 0
    pairs: list[tuple[str, str]] = []
    try:
        outcomes = bounded_map(load, rows, workers, 64)
        for index, (row, outcome) in enumerate(
            progress_bar(
                zip(rows, outcomes, strict=True),
                total=len(rows),
                desc=f"{what} {name}",
                unit="img",
                disable=not progress,
            )
        ):
            if isinstance(outcome, str):
                skipped.append(outcome)
                continue
            payload, sha = outcome
            class_name = canonical_class(row.get("class_name", "")) or row.get("class_name", "")
            folder = class_name or "unlabelled"
            relative = Path(name) / folder / f"{index:05d}_{Path(row['path']).stem}.{suffix}"
            (staging / folder).mkdir(exist_ok=True)
            (staging / relative.relative_to(name)).write_bytes(payload)
            written.append({**row, "path": relative.as_posix(), "source_sha256": sha})
            counts[folder] += 1
            total_bytes += len(payload)
            pairs.append((sha, class_name))
        with staged_table.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*columns, "source_sha256"])
            writer.writeheader()
            writer.writerows(written)
        staging.rename(target)
        staged_table.rename(table)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        staged_table.unlink(missing_ok=True)
        raise
    return CopiesWritten(
        name=name,
        table=table,
        counts=dict(sorted(counts.items())),
        bytes=total_bytes,
        source_fingerprint=dataset_fingerprint(pairs),
        skipped=skipped,
    )
