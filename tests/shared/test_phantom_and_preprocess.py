"""Phantom generator and the one preprocessing definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brainmri.data.labels import CLASS_NAMES
from brainmri.data.manifest import Sample
from brainmri.imaging.decode import decode_image
from brainmri.inference.engine import InferenceEngine
from brainmri.models.bundle import load_bundle
from brainmri.phantom import generate_phantom, phantom_png
from brainmri.preprocess import PreprocessConfig, content_box, preprocess_slice
from brainmri.training.data import EvalDataset, build_cache, eval_tensor_from_file


def test_phantoms_are_deterministic_and_class_dependent() -> None:
    first = generate_phantom("glioma", seed=4)
    assert np.array_equal(first, generate_phantom("glioma", seed=4))
    assert not np.array_equal(first, generate_phantom("glioma", seed=5))
    healthy = generate_phantom("no_tumor", seed=4)
    for name in ("glioma", "meningioma", "pituitary"):
        assert np.abs(generate_phantom(name, seed=4).astype(int) - healthy).sum() > 0
    with pytest.raises(ValueError, match="unknown class"):
        generate_phantom("astrocytoma", seed=1)


def test_letterbox_keeps_proportions() -> None:
    config = PreprocessConfig(img_size=64)
    wide = np.ones((50, 100), dtype=np.float32)
    tensor = preprocess_slice(wide, config)
    assert tensor.shape == (3, 64, 64)
    box = content_box(wide, config)
    assert (box.top, box.height, box.width) == (16, 32, 64)
    # Outside the content box is black padding: (0 - 0.5) / 0.5 = -1.
    assert torch.all(tensor[:, :10] == -1.0)
    assert torch.allclose(tensor[:, 20:44], torch.ones(1))
    squash = preprocess_slice(wide, config.model_copy(update={"resize": "squash"}))
    assert torch.allclose(squash, torch.ones(1))


def test_in_chans_one() -> None:
    tensor = preprocess_slice(
        np.zeros((40, 40), np.float32), PreprocessConfig(img_size=32, in_chans=1)
    )
    assert tensor.shape == (1, 32, 32)


@pytest.mark.parametrize(
    ("resize", "crop"), [("letterbox", "none"), ("squash", "none"), ("letterbox", "head")]
)
def test_training_eval_and_local_predict_tensors_are_identical(
    tmp_path: Path, random_bundle_dir: Path, resize: str, crop: str
) -> None:
    """The train-time eval transform, the engine (CLI/worker) path and the reference agree."""
    path = tmp_path / "scan.jpg"
    path.write_bytes(phantom_png("meningioma", seed=8, size=150))  # a PNG named .jpg
    bundle = load_bundle(random_bundle_dir)
    config = bundle.metadata.preprocess.model_copy(update={"resize": resize, "crop": crop})
    bundle.metadata = bundle.metadata.model_copy(update={"preprocess": config})
    sample = Sample(path, "meningioma")

    cache = build_cache(
        [sample], CLASS_NAMES, config, size=config.img_size, as_uint8=False, progress=False
    )
    train_eval = EvalDataset(cache, config)[0][0]
    engine_tensor = InferenceEngine(bundle, device="cpu").prepare_source(path).tensors[0]
    reference = eval_tensor_from_file(sample, config)
    direct = preprocess_slice(decode_image(path.read_bytes()).pixels, config)
    assert torch.equal(train_eval, engine_tensor)
    assert torch.equal(engine_tensor, reference)
    assert torch.equal(reference, direct)


@pytest.mark.parametrize("kind", ["rgb-jpeg-with-exif", "16-bit-png", "palette-png"])
def test_service_predict_sees_the_same_tensor(
    tmp_path: Path, random_bundle_dir: Path, kind: str
) -> None:
    """The worker scores the sanitized upload the API stored; it must equal the local path."""
    from PIL import Image

    from brainmri.imaging.dicom import SliceSelection
    from brainmri.imaging.ingest import sanitize_upload
    from brainmri.imaging.limits import InputLimits
    from brainmri_worker.predict import prepare_upload
    from tests.helpers import encode

    grey = generate_phantom("glioma", seed=3, size=120)
    if kind == "rgb-jpeg-with-exif":
        exif = Image.Exif()
        exif[0x0112] = 8
        data = encode(
            Image.fromarray(grey).convert("RGB").resize((130, 100)), "JPEG", exif=exif, quality=90
        )
    elif kind == "16-bit-png":
        data = encode(Image.fromarray(grey.astype(np.uint16) * 257))
    else:
        data = encode(Image.fromarray(grey).convert("P", palette=Image.Palette.ADAPTIVE))
    path = tmp_path / "scan.img"
    path.write_bytes(data)
    bundle = load_bundle(random_bundle_dir)
    engine = InferenceEngine(bundle, device="cpu")
    stored = sanitize_upload(data, InputLimits(), SliceSelection()).data
    service = prepare_upload(engine, stored).tensors[0]
    local = engine.prepare_source(path).tensors[0]
    config = bundle.metadata.preprocess
    cache = build_cache(
        [Sample(path, "glioma")],
        CLASS_NAMES,
        config,
        size=config.img_size,
        as_uint8=False,
        progress=False,
    )
    train_eval = EvalDataset(cache, config)[0][0]
    assert torch.equal(service, local)
    assert torch.equal(local, train_eval)


def test_the_upload_limit_is_on_the_bytes_sent_not_on_the_lossless_copy() -> None:
    """A JPEG under BRAINMRI_MAX_UPLOAD_BYTES was refused as 413 because its metadata-free
    PNG copy, the service's own product, was held to the same byte limit (a 25 KB JPEG "was
    126618 bytes"). The copy is still decoded under every other limit."""
    from PIL import Image

    from brainmri.errors import InputTooLargeError
    from brainmri.imaging.dicom import SliceSelection
    from brainmri.imaging.ingest import sanitize_upload
    from brainmri.imaging.limits import InputLimits
    from tests.helpers import encode

    noise = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=60)
    limits = InputLimits(max_bytes=len(data) + 100)
    stored = sanitize_upload(data, limits, SliceSelection())
    assert stored.extension == ".png"
    assert len(stored.data) > limits.max_bytes  # the copy is larger, and that is fine
    with pytest.raises(InputTooLargeError, match="limit"):
        sanitize_upload(data, InputLimits(max_bytes=len(data) - 1), SliceSelection())
    with pytest.raises(InputTooLargeError):  # the pixel limit still holds for the copy
        sanitize_upload(data, InputLimits(max_pixels=256 * 255), SliceSelection())
