"""Labelled samples from a CSV manifest or a folder of class-named subfolders."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from brainmri.data.builder import scan_class_folders
from brainmri.data.labels import CLASS_NAMES, canonical_class
from brainmri.errors import DatasetError


@dataclass(frozen=True, slots=True)
class Sample:
    path: Path
    class_name: str
    group_id: str | None = None


def read_manifest(csv_path: Path) -> list[Sample]:
    """Rows of a builder CSV (or the original's ``path,class_name,...`` CSV).

    Relative paths are resolved against the CSV's folder. ``class_name`` may be any alias;
    without it, ``multiclass_label`` is read in the original class order.
    """
    csv_path = Path(csv_path)
    samples: list[Sample] = []
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise DatasetError(f"{csv_path} has no 'path' column")
        for line, row in enumerate(reader, start=2):
            label = _row_label(row)
            if label is None:
                raise DatasetError(f"{csv_path}:{line}: no usable class_name/multiclass_label")
            path = manifest_path(csv_path, row["path"])
            samples.append(Sample(path, label, row.get("group_id") or None))
    if not samples:
        raise DatasetError(f"{csv_path} lists no samples")
    return samples


def manifest_path(csv_path: Path, value: str) -> Path:
    """A manifest row's file: relative paths are resolved against the CSV's folder."""
    path = Path(value)
    return path if path.is_absolute() else (Path(csv_path).parent / path).resolve()


def _row_label(row: dict[str, str]) -> str | None:
    if row.get("class_name"):
        return canonical_class(row["class_name"])
    label = row.get("multiclass_label", "")
    if label.strip().isdigit() and int(label) < len(CLASS_NAMES):
        return CLASS_NAMES[int(label)]
    return None


def samples_from_folder(root: Path) -> list[Sample]:
    items, _ = scan_class_folders([Path(root)])
    if not items:
        raise DatasetError(f"no images under class-named folders in {root}")
    return [Sample(item.path, item.class_name) for item in items]


def load_samples(source: Path) -> list[Sample]:
    """A folder of class folders, or a CSV manifest."""
    source = Path(source)
    if source.is_dir():
        return samples_from_folder(source)
    if source.is_file():
        return read_manifest(source)
    raise DatasetError(f"{source} is neither a folder nor a CSV manifest")
