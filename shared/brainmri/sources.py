"""Server-side data sources named in requests, checked against the configured allow-list.

A source is a local folder (or file) under one of ``BRAINMRI_ALLOWED_ROOTS``, or an S3 prefix
(``s3://bucket/prefix/``) under one of the allowed ``s3://`` roots. Nothing else is read: no
path on the server is reachable through the API unless an operator listed its root. Local
paths are resolved (symlinks included) before the check, and every file found under an allowed
folder is checked again, so a symlink cannot lead out of the root.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from brainmri.config import Settings
from brainmri.data.labels import canonical_class
from brainmri.errors import DatasetError, PathNotAllowedError
from brainmri.evaluation.report import EvalItem
from brainmri.imaging.inputs import read_file_limited
from brainmri.imaging.limits import InputLimits
from brainmri.storage import ObjectStore
from brainmri.storage.factory import store_for_uri


@dataclass(frozen=True, slots=True)
class DataSource:
    kind: Literal["local", "s3"]
    uri: str  # normalised: an absolute path, or s3://bucket/prefix/
    root: str  # the allowed root it lies under


def _s3_roots(settings: Settings) -> list[str]:
    return [r.rstrip("/") + "/" for r in settings.allowed_root_list if r.startswith("s3://")]


def _local_roots(settings: Settings) -> list[Path]:
    return [
        Path(r).expanduser().resolve()
        for r in settings.allowed_root_list
        if not r.startswith("s3://")
    ]


def _refuse_control_characters(source: str) -> None:
    """Refuse control characters up front. A NUL makes ``Path.resolve`` (and PostgreSQL, for
    anything stored) raise ValueError - a 500 instead of the client's error - and the others,
    though legal in POSIX file names, have no place in a dataset path and would otherwise
    reach job params and logs verbatim."""
    for position, char in enumerate(source):
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            raise PathNotAllowedError(
                f"the source contains a control character (U+{ord(char):04X} at position "
                f"{position}); paths and s3:// prefixes cannot contain control characters"
            )


def resolve_source(source: str, settings: Settings) -> DataSource:
    """Normalise ``source`` and check it against the allow-list (PathNotAllowedError if not)."""
    source = (source or "").strip()
    if not source:
        raise PathNotAllowedError("a source is required")
    _refuse_control_characters(source)
    if source.startswith("s3://"):
        normalised = source.rstrip("/") + "/"
        bucket_and_key = normalised[len("s3://") :]
        if ".." in PurePosixPath(bucket_and_key).parts or not bucket_and_key.split("/")[0]:
            raise PathNotAllowedError(f"{source!r} is not a valid s3:// prefix")
        for s3_root in _s3_roots(settings):
            if normalised.startswith(s3_root):
                return DataSource("s3", normalised, s3_root)
        raise PathNotAllowedError(
            f"{source!r} is not under an allowed root (configure BRAINMRI_ALLOWED_ROOTS)"
        )
    if "://" in source:
        raise PathNotAllowedError(f"unsupported source scheme in {source!r}; use a folder or s3://")
    path = Path(source).expanduser().resolve()
    for root in _local_roots(settings):
        if path == root or root in path.parents:
            return DataSource("local", str(path), str(root))
    raise PathNotAllowedError(
        f"{source!r} is not under an allowed root (configure BRAINMRI_ALLOWED_ROOTS)"
    )


def _label_from_parents(parts: Sequence[str]) -> str | None:
    return next((canonical_class(part) for part in reversed(parts) if canonical_class(part)), None)


def list_source_items(
    source: DataSource,
    settings: Settings,
    *,
    recursive: bool = True,
    limits: InputLimits | None = None,
) -> list[EvalItem]:
    """Every file under the source with its label from the nearest class-named folder."""
    limits = limits or InputLimits.from_settings(settings)
    counter = _ListingCounter(source.uri, settings.max_source_files)
    if source.kind == "local":
        return _local_items(Path(source.uri), Path(source.root), recursive, limits, counter)
    return _s3_items(source, settings, recursive, limits, counter)


class _ListingCounter:
    """Stops a listing once it passes ``most`` files: a source with millions of objects
    would otherwise be listed whole into memory before any limit could apply."""

    def __init__(self, uri: str, most: int) -> None:
        self.uri, self.most, self.seen = uri, most, 0

    def count(self) -> None:
        self.seen += 1
        if self.seen > self.most:
            raise DatasetError(
                f"{self.uri} holds more than {self.most} files (BRAINMRI_MAX_SOURCE_FILES); "
                "point at a smaller folder or prefix"
            )


def _local_items(
    folder: Path, root: Path, recursive: bool, limits: InputLimits, counter: _ListingCounter
) -> list[EvalItem]:
    if folder.is_file():
        files = [folder]
    elif folder.is_dir():
        files = []
        for path in folder.rglob("*") if recursive else folder.iterdir():
            if path.is_file():
                counter.count()
                files.append(path)
        files.sort()
    else:
        raise DatasetError(f"{folder} does not exist")
    items = []
    for path in files:
        resolved = path.resolve()
        if root not in resolved.parents:
            continue  # a symlink pointing out of the allowed root
        relative = path.relative_to(folder) if folder.is_dir() else Path(path.name)
        if any(part.startswith(".") for part in relative.parts):
            continue
        label = _label_from_parents(path.relative_to(root).parts[:-1])
        items.append(EvalItem(str(path), label, _file_loader(resolved, limits)))
    return items


def _file_loader(path: Path, limits: InputLimits) -> Callable[[], bytes]:
    return lambda: read_file_limited(path, limits)


def _s3_items(
    source: DataSource,
    settings: Settings,
    recursive: bool,
    limits: InputLimits,
    counter: _ListingCounter,
) -> list[EvalItem]:
    bucket, _, prefix = source.uri[len("s3://") :].partition("/")
    store = store_for_uri(f"s3://{bucket}", settings)
    items = []
    for info in store.list(prefix):
        relative = info.key[len(prefix) :]
        if not recursive and "/" in relative:
            continue
        parts = PurePosixPath(info.key).parts
        if any(part.startswith(".") for part in parts):
            continue
        counter.count()  # what the evaluation would use, as the listing streams in
        items.append(
            EvalItem(
                f"s3://{bucket}/{info.key}",
                _label_from_parents(parts[:-1]),
                _s3_loader(store, info.key, limits),
            )
        )
    return items


def _s3_loader(store: ObjectStore, key: str, limits: InputLimits) -> Callable[[], bytes]:
    return lambda: store.get(key, max_bytes=limits.max_bytes)


def balanced_sample(items: Sequence[EvalItem], limit: int, *, seed: int = 0) -> list[EvalItem]:
    """At most ``limit`` items, taken round-robin across classes from seeded shuffles.

    Files outside class folders (a README or SOURCE.md beside them, loose scans) are taken
    only once every class is used up: they have no label to balance, and each took a class's
    share before (a 40-image sample of the real data held 39 scans and SOURCE.md).
    (The original took the first N sorted paths, which is one class only.)
    """
    if limit <= 0 or limit >= len(items):
        return list(items)
    by_class: dict[str | None, list[EvalItem]] = defaultdict(list)
    for item in items:
        by_class[item.true_class].append(item)
    rng = random.Random(seed)
    pools = []
    for key in sorted((k for k in by_class if k is not None), key=str):
        pool = list(by_class[key])
        rng.shuffle(pool)
        pools.append(pool)
    unlabelled = list(by_class.get(None, []))
    rng.shuffle(unlabelled)
    chosen: list[EvalItem] = []
    while len(chosen) < limit and any(pools):
        for pool in pools:
            if pool and len(chosen) < limit:
                chosen.append(pool.pop())
    chosen += unlabelled[: limit - len(chosen)]
    return sorted(chosen, key=lambda item: item.name)
