"""A local folder as an object store (embedded mode)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from brainmri.errors import InputTooLargeError
from brainmri.storage.base import (
    ForeignObjectURIError,
    InvalidObjectKeyError,
    ObjectInfo,
    ObjectNotFoundError,
    StorageUnavailableError,
    validate_key,
)


class LocalObjectStore:
    """Objects are files under ``root``; writes go through a temp file and a rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if self.root not in path.parents:
            raise InvalidObjectKeyError(f"invalid object key {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, staging = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(staging, path)
        except OSError as exc:
            raise StorageUnavailableError(f"cannot write {key}: {exc.strerror}") from exc
        return self.uri(key)

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        path = self._path(key)
        try:
            size = path.stat().st_size
            if max_bytes is not None and size > max_bytes:
                raise InputTooLargeError(
                    f"{key} is {size} bytes; the limit is {max_bytes}", code="file_too_large"
                )
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"no object {key}") from exc
        except OSError as exc:
            raise StorageUnavailableError(f"cannot read {key}: {exc.strerror}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        for key in keys:
            self.delete(key)
        folder = self.root / prefix.rstrip("/") if prefix else None
        if folder and folder.is_dir() and self.root in folder.resolve().parents:
            shutil.rmtree(folder, ignore_errors=True)
        return len(keys)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if not path.is_file() or path.name.startswith(".upload-"):
                continue
            key = path.relative_to(base).as_posix()
            if key.startswith(prefix):
                stat = path.stat()
                yield ObjectInfo(key, stat.st_size, modified=stat.st_mtime)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def key_from_uri(self, uri: str) -> str:
        """The key of a ``file://`` URI recorded by this store - even after the folder moved.

        Job rows keep absolute URIs, so moving or renaming the data directory would orphan
        every recorded artifact. The key is the path below the store's root folder, so a URI
        that is not under the current root is resolved by the part after a segment named like
        the root (``.../objects/<key>``) - accepted only when that object exists here. (The
        URI is percent-decoded: :meth:`uri` encodes spaces, brackets and non-ASCII letters.)
        """
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ForeignObjectURIError(f"{uri} is not in this store")
        path = PurePosixPath(unquote(parsed.path))
        root = PurePosixPath(self.root.as_posix())
        key: str | None = None
        if ".." not in path.parts:  # a store never records one: refused, not resolved
            if path.is_relative_to(root):
                key = _valid_or_none(path.relative_to(root).as_posix())
            else:
                key = self._relocated_key(path.parts)
        if key is None:
            raise ForeignObjectURIError(f"{uri} is not in this store")
        return key

    def _relocated_key(self, parts: tuple[str, ...]) -> str | None:
        """The first (longest) tail after a segment named like the root that exists here."""
        for index, part in enumerate(parts[:-1]):
            if part != self.root.name:
                continue
            candidate = _valid_or_none("/".join(parts[index + 1 :]))
            if candidate and self._path(candidate).is_file():
                return candidate
        return None

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".readyz"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageUnavailableError(f"object folder {self.root} is not writable") from exc


def _valid_or_none(key: str) -> str | None:
    try:
        return validate_key(key)
    except InvalidObjectKeyError:
        return None
