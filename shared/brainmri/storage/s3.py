"""S3-compatible object store (MinIO, AWS S3) on the ``minio`` SDK."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import TypeVar

import urllib3
from minio import Minio
from minio.error import S3Error

from brainmri.errors import InputTooLargeError
from brainmri.storage.base import (
    ForeignObjectURIError,
    ObjectInfo,
    ObjectNotFoundError,
    StorageUnavailableError,
    validate_key,
)

T = TypeVar("T")
_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}


class S3ObjectStore:
    """Objects under ``s3://bucket/prefix/``."""

    def __init__(self, client: Minio, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFoundError(f"{action}: {exc.code}") from exc
            raise StorageUnavailableError(f"{action}: S3 error {exc.code}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailableError(f"{action}: object store unreachable ({exc})") from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        name = self._key(key)
        self._call(
            f"put {key}",
            lambda: self.client.put_object(
                self.bucket, name, io.BytesIO(data), len(data), content_type=content_type
            ),
        )
        return self.uri(key)

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        name = self._key(key)

        def read() -> bytes:
            if max_bytes is not None:
                size = self.client.stat_object(self.bucket, name).size or 0
                if size > max_bytes:
                    raise InputTooLargeError(
                        f"{key} is {size} bytes; the limit is {max_bytes}", code="file_too_large"
                    )
            response = self.client.get_object(self.bucket, name)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._call(f"get {key}", read)

    def exists(self, key: str) -> bool:
        try:
            self._call(f"stat {key}", lambda: self.client.stat_object(self.bucket, self._key(key)))
        except ObjectNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", lambda: self.client.remove_object(self.bucket, self._key(key)))

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Keys in S3's order (UTF-8 bytes), streamed page by page: nothing is held in memory,
        and a caller may stop early (the evaluation listing limit does)."""
        start = self.prefix + prefix
        pages = iter(self.client.list_objects(self.bucket, prefix=start, recursive=True))
        while True:
            obj = self._call(f"list {prefix}", lambda: next(pages, None))
            if obj is None:
                return
            if obj.is_dir or not obj.object_name:
                continue
            yield ObjectInfo(
                obj.object_name[len(self.prefix) :],
                int(obj.size or 0),
                (obj.etag or "").strip('"'),
                obj.last_modified.timestamp() if obj.last_modified else None,
            )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def key_from_uri(self, uri: str) -> str:
        if not uri.startswith(self.url):
            raise ForeignObjectURIError(f"{uri} is not in this store")
        return validate_key(uri[len(self.url) :])

    def check(self) -> None:
        if not self._call("bucket_exists", lambda: self.client.bucket_exists(self.bucket)):
            raise StorageUnavailableError(f"bucket {self.bucket} does not exist")
