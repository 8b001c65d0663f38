"""Turning a training-dataset *source* into labelled local files, and fingerprinting it.

A source (always checked against the allow-list by :func:`brainmri.sources.resolve_source`) is:

* a folder of class-named subfolders - local, or an ``s3://bucket/prefix/``;
* a CSV manifest (``path,class_name,...``) - local or on S3; relative paths are resolved
  against the manifest's location and every path must itself lie under an allowed root.

S3 objects are downloaded into a job-private folder under generated names; local files are
used where they are. The *source fingerprint* changes exactly when the labelled content does:
content sha256 for local files, the S3 ETag (a content digest) for objects.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from brainmri.config import Settings
from brainmri.data.builder import LabelledPath, dataset_fingerprint
from brainmri.data.labels import CLASS_NAMES, canonical_class
from brainmri.errors import DatasetError
from brainmri.imaging.limits import InputLimits
from brainmri.sources import DataSource, resolve_source
from brainmri.storage import ObjectInfo, ObjectStore
from brainmri.storage.factory import store_for_uri

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One labelled file of a source, readable through ``read``; ``digest`` identifies content."""

    name: str
    class_name: str
    digest: Callable[[], str]
    read: Callable[[], bytes]
    local_path: Path | None = None


def _label(parts: tuple[str, ...]) -> str | None:
    return next((canonical_class(p) for p in reversed(parts) if canonical_class(p)), None)


def _local_file(path: Path, label: str, limits: InputLimits) -> RemoteFile:
    def read() -> bytes:
        if path.stat().st_size > limits.max_bytes:
            raise DatasetError(f"{path} exceeds the size limit")
        return path.read_bytes()

    return RemoteFile(str(path), label, lambda: hashlib.sha256(read()).hexdigest(), read, path)


# Closures over one object each (typed, where lambdas with default arguments are not).
def _etag_digest(info: ObjectInfo) -> Callable[[], str]:
    return lambda: f"etag:{info.etag}:{info.size}"


def _object_reader(store: ObjectStore, key: str, limits: InputLimits) -> Callable[[], bytes]:
    return lambda: store.get(key, max_bytes=limits.max_bytes)


def _object_sha256(store: ObjectStore, key: str, limits: InputLimits) -> Callable[[], str]:
    return lambda: (
        "sha256:" + hashlib.sha256(store.get(key, max_bytes=limits.max_bytes)).hexdigest()
    )


def list_dataset(source: DataSource, settings: Settings) -> list[RemoteFile]:
    """Every labelled file of the source (unlabelled files are skipped)."""
    limits = InputLimits.from_settings(settings)
    if source.uri.lower().rstrip("/").endswith(".csv"):
        return _from_manifest(source, settings, limits)
    if source.kind == "local":
        root = Path(source.uri)
        if not root.is_dir():
            raise DatasetError(f"{root} is not a folder")
        files = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root)
            resolved = path.resolve()
            if any(part.startswith(".") for part in relative.parts) or (
                Path(source.root) not in resolved.parents
            ):
                continue
            label = _label(relative.parts[:-1]) or _label((root.name,))
            if label:
                files.append(_local_file(resolved, label, limits))
        return files
    bucket, _, prefix = source.uri[len("s3://") :].partition("/")
    store = store_for_uri(f"s3://{bucket}", settings)
    files = []
    for info in store.list(prefix):
        parts = PurePosixPath(info.key[len(prefix) :]).parts
        label = _label(parts[:-1])
        if label and not any(part.startswith(".") for part in parts):
            files.append(
                RemoteFile(
                    f"s3://{bucket}/{info.key}",
                    label,
                    _etag_digest(info),
                    _object_reader(store, info.key, limits),
                )
            )
    return files


def _from_manifest(source: DataSource, settings: Settings, limits: InputLimits) -> list[RemoteFile]:
    if source.kind == "local":
        manifest_bytes = Path(source.uri.rstrip("/")).read_bytes()
        base = str(Path(source.uri.rstrip("/")).parent)
    else:
        bucket, _, key = source.uri[len("s3://") :].rstrip("/").partition("/")
        manifest_bytes = store_for_uri(f"s3://{bucket}", settings).get(
            key, max_bytes=limits.max_bytes
        )
        base = f"s3://{bucket}/{PurePosixPath(key).parent}"
    reader = csv.DictReader(io.StringIO(manifest_bytes.decode("utf-8-sig")))
    if not reader.fieldnames or "path" not in reader.fieldnames:
        raise DatasetError("the manifest has no 'path' column")
    files = []
    for line, row in enumerate(reader, start=2):
        label = canonical_class(row.get("class_name") or "")
        if label is None and (row.get("multiclass_label") or "").strip().isdigit():
            index = int(row["multiclass_label"])
            label = CLASS_NAMES[index] if index < len(CLASS_NAMES) else None
        if label is None:
            raise DatasetError(f"manifest line {line}: no usable class")
        raw = row["path"].strip()
        absolute = (
            raw if raw.startswith("s3://") or raw.startswith("/") else (f"{base.rstrip('/')}/{raw}")
        )
        entry = resolve_source(absolute, settings)  # every listed file must be allowed too
        if entry.kind == "local":
            files.append(_local_file(Path(entry.uri), label, limits))
        else:
            bucket, _, key = entry.uri[len("s3://") :].rstrip("/").partition("/")
            store = store_for_uri(f"s3://{bucket}", settings)
            files.append(
                RemoteFile(
                    entry.uri.rstrip("/"),
                    label,
                    _object_sha256(store, key, limits),
                    _object_reader(store, key, limits),
                )
            )
    return files


def fingerprint(files: list[RemoteFile]) -> str:
    return dataset_fingerprint((file.digest(), file.class_name) for file in files)


def materialize(
    files: list[RemoteFile], dest: Path, on_progress: Callable[[int, int], None] | None = None
) -> list[LabelledPath]:
    """Local labelled paths for every file; remote ones are downloaded under generated names."""
    items: list[LabelledPath] = []
    for index, file in enumerate(files):
        if file.local_path is not None:
            items.append(LabelledPath(file.local_path, file.class_name))
        else:
            stem = _SAFE.sub("_", PurePosixPath(file.name).name)[-80:] or "image"
            target = dest / file.class_name / f"{index:06d}_{stem}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read())
            items.append(LabelledPath(target, file.class_name))
        if on_progress:
            on_progress(index + 1, len(files))
    if not items:
        raise DatasetError("the dataset source holds no labelled images")
    return items
