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

import csv
import io
import json
import logging
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from brainmri.concurrency import bounded_map
from brainmri.data.builder import dataset_fingerprint
from brainmri.data.labels import canonical_class
from brainmri.data.manifest import manifest_path
from brainmri.errors import DatasetError
from brainmri.imaging.inputs import read_raster_or_reason
from brainmri.imaging.limits import InputLimits
from brainmri.preprocess import PreprocessConfig, square_resize, to_uint8
from brainmri.progress import progress_bar

log = logging.getLogger(__name__)

PACK_INDEX = "pack.json"


@dataclass(frozen=True)
class PackSummary:
    """What one manifest's pack holds."""

    name: str
    source: str
    size: int
    quality: int
    resize: str
    counts: dict[str, int]
    bytes: int
    source_fingerprint: str
    skipped: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(self.counts.values())


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

    Rows whose file cannot be read are skipped and listed (as the trainer's own cache does),
    never half-written: images and CSV are staged and renamed into place last.
    """
    manifest = Path(manifest)
    out_dir = Path(out_dir)
    if not 32 <= size <= 2048:
        raise DatasetError(f"pack size must be 32-2048 px, got {size}")
    if not 1 <= quality <= 100:
        raise DatasetError(f"JPEG quality must be 1-100, got {quality}")
    name = manifest.stem
    target, table = out_dir / name, out_dir / f"{name}.csv"
    if target.exists() or table.exists():
        raise DatasetError(f"{target} already holds a pack of {name}; choose another --out")
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if "path" not in columns or not rows:
        raise DatasetError(f"{manifest} has no 'path' column or no rows")
    preprocess = PreprocessConfig(img_size=size, resize=resize)  # type: ignore[arg-type]

    def load(row: dict[str, str]) -> tuple[bytes, str] | str:
        outcome = read_raster_or_reason(manifest_path(manifest, row["path"]), limits)
        if isinstance(outcome, str):
            return outcome
        pixels, sha256 = outcome
        return _encode(pixels, preprocess, quality), sha256

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
                desc=f"pack {name}",
                unit="img",
                disable=not progress,
            )
        ):
            if isinstance(outcome, str):
                skipped.append(outcome)
                continue
            jpeg, sha = outcome
            class_name = canonical_class(row.get("class_name", "")) or row.get("class_name", "")
            folder = class_name or "unlabelled"
            relative = Path(name) / folder / f"{index:05d}_{Path(row['path']).stem}.jpg"
            (staging / folder).mkdir(exist_ok=True)
            (staging / relative.relative_to(name)).write_bytes(jpeg)
            written.append({**row, "path": relative.as_posix(), "source_sha256": sha})
            counts[folder] += 1
            total_bytes += len(jpeg)
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
    if skipped:
        log.warning("%d unreadable file(s) left out of the pack, e.g. %s", len(skipped), skipped[0])
    summary = PackSummary(
        name=name,
        source=str(manifest),
        size=size,
        quality=quality,
        resize=resize,
        counts=dict(sorted(counts.items())),
        bytes=total_bytes,
        source_fingerprint=dataset_fingerprint(pairs),
        skipped=skipped,
    )
    _record(out_dir, summary)
    return summary


def _record(out_dir: Path, summary: PackSummary) -> None:
    index_path = out_dir / PACK_INDEX
    index = json.loads(index_path.read_text()) if index_path.is_file() else {"manifests": {}}
    entry = asdict(summary)
    entry["n"] = summary.n
    index["manifests"][summary.name] = entry
    index_path.write_text(json.dumps(index, indent=2) + "\n")
