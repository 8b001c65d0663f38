"""Object stores by URL: ``file:///abs/folder`` or ``s3://bucket[/prefix]``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import urllib3
from minio import Minio

from brainmri.config import Settings
from brainmri.errors import ConfigurationError
from brainmri.storage.base import ObjectStore
from brainmri.storage.local import LocalObjectStore
from brainmri.storage.s3 import S3ObjectStore


def s3_client(settings: Settings) -> Minio:
    """A MinIO/S3 client with short timeouts and bounded retries (jobs retry with backoff)."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3.0, read=30.0),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
        maxsize=16,
    )
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=settings.s3_secure,
        region=settings.s3_region or "us-east-1",
        http_client=http,
    )


def store_for_uri(url: str, settings: Settings) -> ObjectStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalObjectStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigurationError(f"{url}: an s3:// URL needs a bucket")
        return S3ObjectStore(s3_client(settings), parsed.netloc, parsed.path.lstrip("/"))
    raise ConfigurationError(f"unsupported object store URL {url!r}; use file:// or s3://")


def open_store(settings: Settings) -> ObjectStore:
    """The service's own store (uploads, artifacts, model registry)."""
    return store_for_uri(settings.resolved_object_store_url, settings)
