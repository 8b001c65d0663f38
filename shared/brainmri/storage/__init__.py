"""Object storage behind one small interface: S3/MinIO (``s3://``) or a local folder (``file://``)."""

from brainmri.storage.base import (
    ForeignObjectURIError,
    InvalidObjectKeyError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    StorageUnavailableError,
    validate_key,
)
from brainmri.storage.factory import open_store, store_for_uri

__all__ = [
    "ForeignObjectURIError",
    "InvalidObjectKeyError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "StorageUnavailableError",
    "open_store",
    "store_for_uri",
    "validate_key",
]
