"""The object-store interface and its errors."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from brainmri.errors import BrainMRIError, InputError

#: S3's own limit on a key (UTF-8 bytes); longer keys cannot exist in any store we use.
MAX_KEY_BYTES = 1024


class StorageUnavailableError(BrainMRIError):
    """The store cannot be reached right now; the operation may succeed if retried."""

    code = "storage_unavailable"


class ObjectNotFoundError(BrainMRIError):
    code = "object_not_found"


class InvalidObjectKeyError(InputError, ValueError):
    """A key that could escape the store or that no store can hold.

    An :class:`InputError` so that batch scoring records it against the one image that has it
    (instead of failing the whole job), and a ``ValueError`` for callers written against the
    original contract.
    """

    code = "invalid_object_key"


class ForeignObjectURIError(ObjectNotFoundError, ValueError):
    """A URI that names no object of this store (another store, or a folder since removed).

    An :class:`ObjectNotFoundError`, so the API answers 404 rather than 500 for a recorded
    artifact that this deployment cannot reach; a ``ValueError`` for the original contract.
    """

    code = "object_not_in_store"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None  # content digest where the store provides one (S3)
    # When the object was last written, POSIX seconds by the store's clock (S3 LastModified,
    # the file's mtime); None where a store cannot tell. The orphan sweeps judge age by it.
    modified: float | None = None


def validate_key(key: str) -> str:
    """Refuse only what is dangerous: a key must never escape the store's root.

    Real dataset file names carry spaces, brackets, ``+``, quotes, commas and non-ASCII letters
    (``glioma/gg (1).jpg``); a key the store itself listed is legitimate, so the check blocks
    just absolute keys, empty / ``.`` / ``..`` segments (path traversal on the local store),
    backslashes (a second path separator on some systems), control characters including NUL,
    and keys longer than S3 allows.
    """
    if (
        not isinstance(key, str)
        or not key
        or key.startswith("/")
        or "\\" in key
        or any(unicodedata.category(char) == "Cc" for char in key)
        or any(part in ("", ".", "..") for part in key.split("/"))
        or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES
    ):
        raise InvalidObjectKeyError(f"invalid object key {key!r}")
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
        """The key of an URI of this store.

        :class:`ForeignObjectURIError` (a 404-style not-found that is also a ``ValueError``)
        for a URI this store cannot resolve.
        """
        ...

    def check(self) -> None:
        """Raise :class:`StorageUnavailableError` unless the store is usable."""
        ...
