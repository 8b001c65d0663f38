"""Grad-CAM: any input size, bytes per call, no hooks or memory left behind."""

from __future__ import annotations

import gc
import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainmri.inference.engine import InferenceEngine
from brainmri.models.bundle import load_bundle
from brainmri.models.factory import count_hooks
from brainmri.phantom import generate_phantom
from tests.helpers import encode


@pytest.fixture(scope="module")
def engine(random_bundle_dir: Path) -> InferenceEngine:
    return InferenceEngine(load_bundle(random_bundle_dir), device="cpu")


@pytest.mark.parametrize(("height", "width"), [(96, 96), (120, 80), (57, 203), (300, 300)])
def test_overlay_has_the_input_size(engine: InferenceEngine, height: int, width: int) -> None:
    pixels = np.array(
        Image.fromarray(generate_phantom("glioma", seed=1, size=128)).resize((width, height))
    )
    prepared = engine.prepare_bytes(encode(Image.fromarray(pixels)))
    result = engine.explain(prepared)
    overlay = Image.open(io.BytesIO(result.png))
    assert overlay.format == "PNG"
    assert overlay.size == (width, height)
    assert overlay.mode == "RGB"
    assert result.heatmap.shape == (height, width)
    assert result.heatmap.min() >= 0.0
    assert result.heatmap.max() <= 1.0


def test_explicit_target_class(engine: InferenceEngine) -> None:
    prepared = engine.prepare_bytes(encode(Image.fromarray(generate_phantom("glioma", seed=2))))
    assert engine.explain(prepared, "pituitary").target_class == 3


def test_fifty_calls_leave_no_hooks_and_bounded_memory(engine: InferenceEngine) -> None:
    prepared = engine.prepare_bytes(encode(Image.fromarray(generate_phantom("meningioma", seed=3))))
    explainer_model = engine._get_explainer().model
    hooks_before = count_hooks(explainer_model)
    engine.explain(prepared)  # warm up lazy state
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    outputs = set()
    for _ in range(50):
        outputs.add(engine.explain(prepared).png)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert count_hooks(explainer_model) == hooks_before == 0
    assert len(outputs) == 1  # deterministic, and each call returns its own bytes
    assert grown < 2 * 1024 * 1024, f"memory grew by {grown} bytes over 50 calls"
