"""Model bundles and the model factory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from brainmri.errors import ModelBundleError
from brainmri.inference.engine import InferenceEngine
from brainmri.models.bundle import load_bundle, read_metadata
from brainmri.models.factory import cam_target_layer, create_model
from brainmri.phantom import phantom_png
from tests.conftest import make_bundle


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_factory_builds_resnets_without_weights(arch: str) -> None:
    model = create_model(arch, num_classes=4, in_chans=3)
    out = model.eval()(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 4)


def test_factory_refuses_pretrained_and_unknown() -> None:
    with pytest.raises(ModelBundleError):
        create_model("resnet18", num_classes=4, pretrained=True)
    with pytest.raises(ModelBundleError):
        create_model("not-a-network", num_classes=4)


def test_factory_ignores_none_kwargs() -> None:
    model = create_model("resnet18", num_classes=4, drop_rate=None)
    assert model.drop_rate == 0.0


def test_cam_layer_is_last_block_output() -> None:
    model = create_model("resnet18", num_classes=4)
    assert cam_target_layer(model) is model.layer4


def test_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.version == bundle.version
    assert loaded.version.startswith("resnet18-")
    for key, value in bundle.state_dict.items():
        assert torch.equal(value, loaded.state_dict[key])
    metadata = json.loads((tmp_path / "b" / "metadata.json").read_text())
    for key in (
        "arch",
        "img_size",
        "class_names",
        "preprocess",
        "temperature",
        "default_threshold",
        "data_fingerprint",
        "metrics",
        "created_at",
        "code_version",
        "weights_sha256",
    ):
        assert key in metadata or key in metadata["preprocess"]


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    weights = tmp_path / "b" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelBundleError) as info:
        load_bundle(tmp_path / "b")
    assert info.value.code == "bundle_integrity"


def test_bundles_are_never_overwritten(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    with pytest.raises(ModelBundleError):
        bundle.save(tmp_path / "b")


def test_fp16_bundle_loads_and_predicts_like_fp32(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "fp32")
    bundle_fp16 = load_bundle(tmp_path / "fp32")
    bundle_fp16.metadata = bundle_fp16.metadata.model_copy(update={"version": ""})
    bundle_fp16.save(tmp_path / "fp16", dtype="float16")
    assert read_metadata(tmp_path / "fp16").weights_dtype == "float16"
    size_ratio = (tmp_path / "fp16" / "model.safetensors").stat().st_size / (
        tmp_path / "fp32" / "model.safetensors"
    ).stat().st_size
    assert size_ratio < 0.55
    data = phantom_png("glioma", seed=1, size=96)
    p32 = InferenceEngine(load_bundle(tmp_path / "fp32"), device="cpu").predict_bytes(data)
    p16 = InferenceEngine(load_bundle(tmp_path / "fp16"), device="cpu").predict_bytes(data)
    assert abs(p32.tumor_prob - p16.tumor_prob) < 5e-3
    assert bundle.version != load_bundle(tmp_path / "fp16").version


def test_class_order_comes_from_the_bundle(tmp_path: Path) -> None:
    """tumor_prob = 1 - P(no_tumor) finds no_tumor by name wherever it sits."""
    names = ["glioma", "meningioma", "pituitary", "no_tumor"]
    make_bundle(tmp_path / "b", class_names=names)
    engine = InferenceEngine(load_bundle(tmp_path / "b"), device="cpu")
    prediction = engine.predict_bytes(phantom_png("glioma", seed=2, size=96))
    assert list(prediction.class_probs) == names
    assert prediction.tumor_prob == pytest.approx(1.0 - prediction.class_probs["no_tumor"])


def test_metadata_without_no_tumor_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no_tumor"):
        make_bundle(tmp_path / "b", class_names=["a", "b", "c", "d"])


def test_malformed_metadata(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    (tmp_path / "b" / "metadata.json").write_text("{not json")
    with pytest.raises(ModelBundleError):
        load_bundle(tmp_path / "b")
