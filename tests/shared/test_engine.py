"""Inference engine: batching, TTA in one forward, backends, calibration, error placement."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from brainmri.concurrency import bounded_map
from brainmri.devices import bf16_supported
from brainmri.errors import ConfigurationError, InputError
from brainmri.evaluation.report import ERRORS_FILE, EvalItem, evaluate
from brainmri.inference.agreement import compare_probabilities
from brainmri.inference.engine import InferenceEngine
from brainmri.inference.results import resolve_threshold
from brainmri.inference.tta import VIEWS, expand_views
from brainmri.models.bundle import BundleMetadata, load_bundle
from brainmri.phantom import phantom_png
from tests.conftest import make_bundle
from tests.shared.dicom_faults import MALFORMED_VALUES, malformed_dicom

CLASSES = ["no_tumor", "glioma", "meningioma", "pituitary"]
BAD_ORIENTATION = MALFORMED_VALUES["non-numeric ImageOrientationPatient"]


@pytest.fixture(scope="module")
def engine(random_bundle_dir: Path) -> InferenceEngine:
    return InferenceEngine(load_bundle(random_bundle_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [phantom_png(CLASSES[i % 4], seed=i, size=80 + 4 * i) for i in range(10)]


def test_batched_equals_one_by_one(engine: InferenceEngine, images: list[bytes]) -> None:
    batched = engine.predict_sources(images)
    singles = [engine.predict_bytes(data) for data in images]
    for a, b in zip(batched, singles, strict=True):
        assert a.class_probs == pytest.approx(b.class_probs, abs=1e-5)


def test_probabilities_are_normalised(engine: InferenceEngine, images: list[bytes]) -> None:
    for prediction in engine.predict_sources(images):
        assert sum(prediction.class_probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert prediction.tumor_prob == pytest.approx(1 - prediction.class_probs["no_tumor"])


def test_tta_runs_all_views_in_one_forward(engine: InferenceEngine, images: list[bytes]) -> None:
    calls: list[int] = []
    original = engine.backend.logits

    def counting(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape[0])
        return original(batch)

    engine.backend.logits = counting  # type: ignore[method-assign]
    try:
        prepared = [engine.prepare_bytes(data) for data in images[:4]]
        engine.predict_prepared(prepared, tta=True)
    finally:
        engine.backend.logits = original  # type: ignore[method-assign]
    assert calls == [4 * len(engine.tta_views)]


def test_tta_average_matches_separate_views(engine: InferenceEngine, images: list[bytes]) -> None:
    batch = torch.stack([engine.prepare_bytes(data).tensors[0] for data in images[:3]])
    combined = engine.probabilities(batch, tta=True)
    separate = np.mean(
        [
            torch.softmax(
                engine.backend.logits(expand_views(batch, [view], engine._fill)), -1
            ).numpy()
            for view in engine.tta_views
        ],
        axis=0,
    )
    np.testing.assert_allclose(combined, separate, atol=1e-5)


def test_default_tta_views_exclude_unseen_rotations(engine: InferenceEngine) -> None:
    assert "rot90" not in engine.tta_views
    assert set(engine.tta_views) <= set(VIEWS)


def test_onnx_backend_agrees_with_fp32(
    random_bundle_dir: Path, images: list[bytes], tmp_path: Path
) -> None:
    bundle = load_bundle(random_bundle_dir)
    eager = InferenceEngine(bundle, device="cpu")
    onnx = InferenceEngine(bundle, backend="onnx", device="cpu", onnx_cache_dir=tmp_path)
    batch = torch.stack([eager.prepare_bytes(data).tensors[0] for data in images])
    agreement = compare_probabilities(eager.probabilities(batch), onnx.probabilities(batch))
    assert agreement.top1_agreement == 1.0
    assert agreement.max_prob_diff < 1e-4
    assert list(tmp_path.glob("onnx/*.onnx"))


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="no native bf16 on this CPU")
def test_bf16_backend_agrees_with_fp32(random_bundle_dir: Path, images: list[bytes]) -> None:
    bundle = load_bundle(random_bundle_dir)
    eager = InferenceEngine(bundle, device="cpu")
    bf16 = InferenceEngine(bundle, backend="bf16", device="cpu")
    batch = torch.stack([eager.prepare_bytes(data).tensors[0] for data in images])
    agreement = compare_probabilities(eager.probabilities(batch), bf16.probabilities(batch))
    assert agreement.max_prob_diff < 0.05


@pytest.mark.skipif(bf16_supported(torch.device("cpu")), reason="this CPU runs bf16 natively")
def test_bf16_backend_is_refused_where_it_would_be_emulated(random_bundle_dir: Path) -> None:
    """Emulated bf16 is slower than fp32, so asking for it is a configuration error, and
    ``auto`` falls back to fp32 instead of failing."""
    bundle = load_bundle(random_bundle_dir)
    with pytest.raises(ConfigurationError, match="bf16 is not supported natively"):
        InferenceEngine(bundle, backend="bf16", device="cpu")
    assert InferenceEngine(bundle, backend="auto", device="cpu").backend.name == "eager"


def test_temperature_softens_probabilities(tmp_path: Path, images: list[bytes]) -> None:
    make_bundle(tmp_path / "t1", temperature=1.0, seed=3)
    make_bundle(tmp_path / "t5", temperature=5.0, seed=3)
    sharp = InferenceEngine(load_bundle(tmp_path / "t1"), device="cpu").predict_bytes(images[0])
    soft = InferenceEngine(load_bundle(tmp_path / "t5"), device="cpu").predict_bytes(images[0])
    assert max(soft.class_probs.values()) < max(sharp.class_probs.values())
    assert soft.predicted_class == sharp.predicted_class


def test_failed_input_does_not_shift_later_results(
    engine: InferenceEngine, images: list[bytes]
) -> None:
    sources = [images[0], b"not an image at all", images[1], b"", images[2]]
    results = engine.predict_sources(sources)
    assert isinstance(results[1], InputError)
    assert results[1].code == "unsupported_format"
    assert isinstance(results[3], InputError)
    assert results[3].code == "empty_file"
    for index, image_index in ((0, 0), (2, 1), (4, 2)):
        expected = engine.predict_bytes(images[image_index])
        assert results[index].class_probs == pytest.approx(expected.class_probs, abs=1e-5)


def test_malformed_dicom_fails_alone_in_a_batch(
    engine: InferenceEngine, images: list[bytes]
) -> None:
    """A DICOM header with a non-numeric number is that file's decode failure, at its index;
    before, its bare ValueError/TypeError escaped the decode pool and aborted the batch."""
    bad = [(keyword, malformed_dicom(keyword, raw)) for keyword, raw in MALFORMED_VALUES.values()]
    sources = [images[0], *(data for _, data in bad), images[1]]
    results = engine.predict_sources(sources)
    assert len(results) == len(sources)
    for index, (keyword, _) in enumerate(bad, start=1):
        assert isinstance(results[index], InputError), keyword
        assert results[index].code == "invalid_dicom"
        assert keyword in str(results[index])
    for index, image_index in ((0, 0), (len(sources) - 1, 1)):
        expected = engine.predict_bytes(images[image_index])
        assert results[index].class_probs == pytest.approx(expected.class_probs, abs=1e-5)


def test_evaluation_lists_a_malformed_dicom_as_failed(
    engine: InferenceEngine, images: list[bytes], tmp_path: Path
) -> None:
    items = [EvalItem(f"{CLASSES[i % 4]}/s{i}.png", CLASSES[i % 4], images[i]) for i in range(6)]
    items.insert(3, EvalItem("glioma/bad.dcm", "glioma", malformed_dicom(*BAD_ORIENTATION)))
    outcome = evaluate(engine, items, tmp_path, threshold=0.5, plots_enabled=False)
    report = outcome.report
    assert (report["n_total"], report["n_scored"], report["n_failed"]) == (7, 6, 1)
    assert [(item.name, error.code) for item, error in outcome.errors] == [
        ("glioma/bad.dcm", "invalid_dicom")
    ]
    with (tmp_path / ERRORS_FILE).open() as handle:
        (row,) = csv.DictReader(handle)
    assert (row["path"], row["error_code"]) == ("glioma/bad.dcm", "invalid_dicom")
    assert "ImageOrientationPatient" in row["message"]


def test_missing_file_is_an_input_error(engine: InferenceEngine, tmp_path: Path) -> None:
    (result,) = engine.predict_sources([tmp_path / "missing.png"])
    assert isinstance(result, InputError)
    assert result.code == "unreadable_file"


def test_threshold_precedence() -> None:
    metadata = BundleMetadata(
        arch="resnet18", class_names=CLASSES, preprocess={"img_size": 64}, default_threshold=0.3
    )
    assert resolve_threshold(0.9, 0.1, metadata) == 0.9  # request beats env
    assert resolve_threshold(None, 0.1, metadata) == 0.1  # env beats bundle
    assert resolve_threshold(None, None, metadata) == 0.3


def test_bounded_map_keeps_order_and_bounds_lookahead() -> None:
    pulled = 0

    def source():
        nonlocal pulled
        for value in range(50):
            pulled += 1
            yield value

    results = bounded_map(lambda value: value * 2, source(), workers=2, window=5)
    first = next(results)
    assert pulled <= 5  # no more than the window was read ahead
    assert [first, *results] == [value * 2 for value in range(50)]


def test_bounded_map_cancels_queued_work_when_a_call_fails() -> None:
    started: list[int] = []

    def square_but_fail_on_two(value: int) -> int:
        started.append(value)
        if value == 2:
            raise ValueError("unreadable slice 2")
        if value > 2:
            time.sleep(0.2)  # slow enough that the failure is seen while 3 is still running
        return value * value

    results = bounded_map(square_but_fail_on_two, range(100), workers=1, window=64)
    with pytest.raises(ValueError, match="unreadable slice 2"):
        list(results)
    assert len(started) <= 4  # 0, 1, the failure and at most one already running; none queued
