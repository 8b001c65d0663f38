"""The object-store interface and its errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from brainmri.errors import BrainMRIError

_KEY = re.compile(r"^[A-Za-z0-9._\-][A-Za-z0-9._\-/ ]*$")


class StorageUnavailableError(BrainMRIError):
    """The store cannot be reached right now; the operation may succeed if retried."""

    code = "storage_unavailable"


class ObjectNotFoundError(BrainMRIError):
    code = "object_not_found"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None  # content digest where the store provides one (S3)


def validate_key(key: str) -> str:
    """Keys are relative, without ``..`` segments or odd characters - never a path escape."""
    if not key or not _KEY.match(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key


@runtime_checkable
class ObjectStore(Protocol):
    """A flat key -> bytes store rooted at ``url``."""

    url: str

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store ``data`` under ``key`` atomically; returns the object's URI."""
        ...

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` (recursively), in key order."""
        ...

    def uri(self, key: str) -> str: ...

    def key_from_uri(self, uri: str) -> str:
        """The key of an URI of this store; ValueError for a URI of another store."""
        ...

    def check(self) -> None:
        """Raise :class:`StorageUnavailableError` unless the store is usable."""
        ...
