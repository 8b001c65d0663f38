"""Object keys with ordinary file-name characters work end to end; traversal is still refused.

Real datasets (SARTAJ: ``glioma/gg (1).jpg``) name files with spaces, brackets, ``+``, quotes,
commas and non-ASCII letters. One such object used to fail a whole evaluation (and training)
job with ``internal_error``. The S3 store here is moto's server over real HTTP.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from brainmri.config import Settings
from brainmri.data.materialize import list_dataset, materialize
from brainmri.errors import DatasetError
from brainmri.evaluation.report import evaluate
from brainmri.inference.engine import InferenceEngine
from brainmri.models.bundle import load_bundle
from brainmri.phantom import phantom_png
from brainmri.sources import list_source_items, resolve_source
from brainmri.storage import InvalidObjectKeyError, ObjectNotFoundError, store_for_uri
from tests.infra import S3Server

DATASET = {
    "test/glioma/gg (1).png": "glioma",
    "test/notumor/no+2.png": "no_tumor",
    "test/meningioma/é.png": "meningioma",
    "test/pituitary/it's, fine [3].png": "pituitary",
}
ODD_KEYS = ["gg (1).png", "no+2.png", "é/ü.png", "it's, a [b] {c} & d=e;f@g#h%i.png", "a b/c d"]
TRAVERSAL = ["../escape", "a/../../b", "/abs/key", "a//b", "a/./b", "", "a\\..\\b", "a\x00b"]


@pytest.fixture
def dataset_bucket(s3: S3Server, tmp_path: Path) -> str:
    bucket = s3.make_bucket(f"keys-{tmp_path.name[-20:].lower().replace('_', '-')}")
    client = s3.client()
    for seed, (key, class_name) in enumerate(DATASET.items()):
        data = phantom_png(class_name, seed=seed, size=64)
        client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="image/png")
    return bucket


def _settings(s3: S3Server, bucket: str) -> Settings:
    return Settings(
        s3_endpoint=s3.endpoint,
        s3_access_key="test",
        s3_secret_key="test-secret",
        s3_region="us-east-1",
        allowed_roots=f"s3://{bucket}/",
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "local":
        return store_for_uri((tmp_path / "objects").as_uri(), Settings())
    s3: S3Server = request.getfixturevalue("s3")
    bucket = s3.make_bucket(f"odd-{tmp_path.name[-20:].lower().replace('_', '-')}")
    return store_for_uri(f"s3://{bucket}/root", _settings(s3, bucket))


@pytest.mark.parametrize("key", ODD_KEYS)
def test_common_file_name_characters_round_trip(store, key: str) -> None:  # type: ignore[no-untyped-def]
    uri = store.put(key, b"payload")
    assert store.get(key) == b"payload"
    assert store.exists(key)
    assert store.key_from_uri(uri) == key
    assert [info.key for info in store.list()] == [key]


@pytest.mark.parametrize("key", TRAVERSAL)
def test_dangerous_keys_are_refused_with_a_domain_error(store, key: str) -> None:  # type: ignore[no-untyped-def]
    for operation in (lambda: store.put(key, b"x"), lambda: store.get(key)):
        with pytest.raises(InvalidObjectKeyError, match="invalid object key") as caught:
            operation()
        assert caught.value.code == "invalid_object_key"
    assert list(store.list()) == []


def test_evaluation_scores_every_odd_named_s3_object(
    s3: S3Server, dataset_bucket: str, random_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(s3, dataset_bucket)
    items = list_source_items(resolve_source(f"s3://{dataset_bucket}/test/", settings), settings)
    assert sorted((item.name, item.true_class) for item in items) == sorted(
        (f"s3://{dataset_bucket}/{key}", label) for key, label in DATASET.items()
    )
    engine = InferenceEngine(load_bundle(random_bundle_dir), device="cpu")
    outcome = evaluate(engine, items, tmp_path / "report", threshold=0.5, plots_enabled=False)
    assert outcome.errors == []
    assert outcome.report["n_scored"] == len(DATASET)
    assert {item.name for item, _ in outcome.predictions} == {item.name for item in items}


def test_one_unfetchable_object_is_that_images_error_not_the_batchs(
    s3: S3Server, dataset_bucket: str, random_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(s3, dataset_bucket)
    items = list_source_items(resolve_source(f"s3://{dataset_bucket}/test/", settings), settings)
    gone = "test/notumor/no+2.png"
    s3.client().remove_object(dataset_bucket, gone)  # deleted between listing and scoring
    store = store_for_uri(f"s3://{dataset_bucket}", settings)
    with pytest.raises(ObjectNotFoundError):
        store.get(gone)
    engine = InferenceEngine(load_bundle(random_bundle_dir), device="cpu")
    sources = [item.source for item in items] + [lambda: store.get("test/../escape.png")]
    results = engine.predict_sources(sources)
    assert len(results) == len(DATASET) + 1
    by_name = dict(zip([item.name for item in items] + ["traversal"], results, strict=True))
    assert by_name.pop(f"s3://{dataset_bucket}/{gone}").code == "object_not_found"
    assert by_name.pop("traversal").code == "invalid_object_key"
    assert all(hasattr(result, "class_probs") for result in by_name.values())

    outcome = evaluate(engine, items, tmp_path / "report", threshold=0.5, plots_enabled=False)
    assert outcome.report["n_scored"] == len(DATASET) - 1
    assert [(item.name, error.code) for item, error in outcome.errors] == [
        (f"s3://{dataset_bucket}/{gone}", "object_not_found")
    ]


def test_training_materialises_every_odd_named_s3_object(
    s3: S3Server, dataset_bucket: str, tmp_path: Path
) -> None:
    settings = _settings(s3, dataset_bucket)
    files = list_dataset(resolve_source(f"s3://{dataset_bucket}/test/", settings), settings)
    items = materialize(files, tmp_path / "train")
    assert sorted((item.path.read_bytes(), item.class_name) for item in items) == sorted(
        (phantom_png(label, seed=seed, size=64), label)
        for seed, label in enumerate(DATASET.values())
    )


def test_a_source_listing_more_files_than_allowed_is_refused(
    s3: S3Server, dataset_bucket: str, tmp_path: Path
) -> None:
    """BRAINMRI_MAX_SOURCE_FILES stops the listing itself, S3 prefix and local folder alike."""
    four = len(DATASET)
    s3_source = f"s3://{dataset_bucket}/test/"
    folder = tmp_path / "local"
    for key in DATASET:
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(b"not decoded while listing")
    for source, roots in ((s3_source, f"s3://{dataset_bucket}/"), (str(folder), str(folder))):
        exact = _settings(s3, dataset_bucket).model_copy(
            update={"allowed_roots": roots, "max_source_files": four}
        )
        assert len(list_source_items(resolve_source(source, exact), exact)) == four
        short = exact.model_copy(update={"max_source_files": four - 1})
        with pytest.raises(DatasetError, match="BRAINMRI_MAX_SOURCE_FILES") as info:
            list_source_items(resolve_source(source, short), short)
        assert f"more than {four - 1} files" in str(info.value)
        # Only files the evaluation would use count: a flat listing skips the class folders.
        one = exact.model_copy(update={"max_source_files": 1})
        assert list_source_items(resolve_source(source, one), one, recursive=False) == []
