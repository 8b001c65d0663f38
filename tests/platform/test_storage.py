"""Object stores: the local folder and S3 (moto's server over real HTTP) behave the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainmri.config import Settings
from brainmri.errors import InputTooLargeError
from brainmri.storage import (
    ForeignObjectURIError,
    ObjectNotFoundError,
    StorageUnavailableError,
    store_for_uri,
)
from tests.infra import S3Server, free_port


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "local":
        return store_for_uri((tmp_path / "objects").as_uri(), Settings())
    s3: S3Server = request.getfixturevalue("s3")
    bucket = s3.make_bucket(f"store-{tmp_path.name[-20:].lower().replace('_', '-')}")
    settings = Settings(s3_endpoint=s3.endpoint, s3_access_key="test", s3_secret_key="test-secret")
    return store_for_uri(f"s3://{bucket}/root", settings)


def test_put_get_list_delete(store) -> None:  # type: ignore[no-untyped-def]
    uri = store.put("uploads/a/input.png", b"png-bytes", "image/png")
    store.put("uploads/a/other.bin", b"12345")
    store.put("artifacts/b/cam.png", b"cam")
    assert store.get("uploads/a/input.png") == b"png-bytes"
    assert store.key_from_uri(uri) == "uploads/a/input.png"
    assert [(o.key, o.size) for o in store.list("uploads/")] == [
        ("uploads/a/input.png", 9),
        ("uploads/a/other.bin", 5),
    ]
    assert store.exists("artifacts/b/cam.png")
    assert store.delete_prefix("uploads/a/") == 2
    assert list(store.list("uploads/")) == []
    with pytest.raises(ObjectNotFoundError):
        store.get("uploads/a/input.png")
    store.check()


def test_size_limit_on_read(store) -> None:  # type: ignore[no-untyped-def]
    store.put("big.bin", b"x" * 1000)
    with pytest.raises(InputTooLargeError):
        store.get("big.bin", max_bytes=999)


@pytest.mark.parametrize("key", ["../escape", "/abs/key", "a/../../b", "", "a//b", "a/./b"])
def test_keys_cannot_escape(store, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="invalid object key"):
        store.put(key, b"x")


def test_uri_of_another_store_is_refused(store) -> None:  # type: ignore[no-untyped-def]
    """Both stores raise the not-found kind, so the API answers 404 rather than 500."""
    with pytest.raises(ForeignObjectURIError, match="not in this store"):
        store.key_from_uri("s3://elsewhere/uploads/x")


def test_unreachable_s3_is_a_transient_error() -> None:
    settings = Settings(
        s3_endpoint=f"127.0.0.1:{free_port()}", s3_access_key="a", s3_secret_key="b"
    )
    store = store_for_uri("s3://bucket", settings)
    with pytest.raises(StorageUnavailableError):
        store.put("k", b"v")
    with pytest.raises(StorageUnavailableError):
        store.check()
