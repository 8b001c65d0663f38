"""``crop="head"``: the slice is cropped to the head's bounding box before the letterbox.

What it must do for users: the same head framed tight or with lots of air reaches the network
at the same scale; specks, burnt-in text and black slices do not move the box; the Grad-CAM
overlay still lies on the slice's own pixels; bundles without the option behave as before.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brainmri.cli.main import main
from brainmri.data.manifest import Sample
from brainmri.explain import GradCamExplainer
from brainmri.models.bundle import default_bundle_dir, load_bundle
from brainmri.phantom import generate_phantom
from brainmri.preprocess import (
    HEAD_MARGIN,
    PreprocessConfig,
    content_box,
    head_box,
    preprocess_slice,
    square_resize,
)
from brainmri.training.data import build_cache

HEAD = generate_phantom("meningioma", seed=11, size=160).astype(np.float32) / 255.0


def framed(head: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """``head`` pasted at (top, left) on a black slice of height x width."""
    canvas = np.zeros((height, width), np.float32)
    canvas[top : top + head.shape[0], left : left + head.shape[1]] = head
    return canvas


def true_extent(pixels: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(pixels > 0.1)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def test_the_box_holds_the_head_and_a_small_margin_of_air() -> None:
    slice_ = framed(HEAD, 70, 210, 400, 500)
    top, left, bottom, right = true_extent(slice_)
    box = head_box(slice_)
    assert box.top <= top and box.left <= left
    assert box.top + box.height >= bottom and box.left + box.width >= right
    slack = HEAD_MARGIN * max(bottom - top, right - left) + 2
    assert top - box.top <= slack and left - box.left <= slack
    assert box.top + box.height - bottom <= slack and box.left + box.width - right <= slack


def test_specks_and_a_text_line_do_not_widen_the_box() -> None:
    clean = framed(HEAD, 100, 100, 400, 400)
    noisy = clean.copy()
    noisy[5, 5] = noisy[390, 12] = noisy[8, 395] = 1.0  # lone hot pixels in the corners
    noisy[385:387, 300:302] = 1.0  # a 2x2 marker
    assert head_box(noisy) == head_box(clean)


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((200, 300), np.float32),  # nothing but air
        framed(np.ones((20, 20), np.float32), 50, 50, 300, 300),  # a marker, not a head
    ],
    ids=["black", "small-marker"],
)
def test_no_head_means_the_whole_slice(pixels: np.ndarray) -> None:
    box = head_box(pixels)
    assert (box.top, box.left, box.height, box.width) == (0, 0, *pixels.shape)


def test_the_same_head_reaches_the_network_at_the_same_scale_whatever_the_air() -> None:
    config = PreprocessConfig(img_size=96, crop="head")
    tight = framed(HEAD, 4, 4, 168, 168)
    loose = framed(HEAD, 150, 40, 460, 300)  # the head fills a third of the longer side
    cropped = [preprocess_slice(pixels, config) for pixels in (tight, loose)]
    # A pixel of box edge apart (the line test counts pixels of different slice sizes), and
    # the phantom's fine noise resampled: close, where the whole slices are far apart.
    assert (cropped[0] - cropped[1]).abs().mean() < 0.08
    whole = [preprocess_slice(pixels, PreprocessConfig(img_size=96)) for pixels in (tight, loose)]
    assert (whole[0] - whole[1]).abs().mean() > 0.2  # without the crop they differ wholesale


def test_the_training_cache_crops_as_inference_does(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "framed.png"
    slice_ = framed(HEAD, 30, 120, 300, 420)
    Image.fromarray((slice_ * 255 + 0.5).astype(np.uint8)).save(path)
    decoded = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    config = PreprocessConfig(img_size=64, crop="head")
    cache = build_cache(
        [Sample(path, "glioma")],
        ["no_tumor", "glioma", "meningioma", "pituitary"],
        config,
        size=64,
        as_uint8=False,
        progress=False,
    )
    assert torch.equal(cache.images[0], square_resize(decoded, 64, config))


def test_the_cam_lies_on_the_slice_and_only_where_the_network_looked() -> None:
    bundle = load_bundle(default_bundle_dir())  # trained: its CAM is not all zero
    config = bundle.metadata.preprocess.model_copy(update={"crop": "head"})
    slice_ = framed(HEAD, 200, 30, 420, 260)
    box = content_box(slice_, config)
    seen = box.source
    assert seen == head_box(slice_)
    model = bundle.build_model().eval()
    tensor = preprocess_slice(slice_, config)
    with torch.no_grad():
        predicted = int(model(tensor[None]).argmax())
    heat = GradCamExplainer(model, config).explain(tensor, slice_, predicted).heatmap
    assert heat.shape == slice_.shape
    outside = np.ones(slice_.shape, bool)
    outside[seen.top : seen.top + seen.height, seen.left : seen.left + seen.width] = False
    assert heat[outside].max() == 0.0
    assert heat.max() == pytest.approx(1.0)


def test_bundles_from_before_the_option_keep_the_whole_slice() -> None:
    default = load_bundle(default_bundle_dir())  # the shipped model: no "crop" in it
    assert "crop" not in (default_bundle_dir() / "metadata.json").read_text()
    assert default.metadata.preprocess.crop == "none"
    slice_ = framed(HEAD, 150, 40, 460, 300)
    config = default.metadata.preprocess
    assert torch.equal(
        preprocess_slice(slice_, config),
        preprocess_slice(slice_, config.model_copy(update={"crop": "none"})),
    )
    assert content_box(slice_, config).source == head_box(np.zeros((460, 300), np.float32))


#: PreprocessConfig's fields before ``crop``: that version refused any other key.
FIELDS_BEFORE_CROP = {"img_size", "resize", "interpolation", "antialias", "in_chans", "mean", "std"}


@pytest.mark.parametrize("crop", ["none", "head"])
def test_only_a_cropping_bundle_writes_crop(
    random_bundle_dir: Path, tmp_path: Path, crop: str
) -> None:
    """A bundle that does not crop stays loadable by workers from before the option (a rolling
    upgrade's older workers serving a model the new trainer promoted)."""
    bundle = load_bundle(random_bundle_dir)
    preprocess = bundle.metadata.preprocess.model_copy(update={"crop": crop})
    bundle.metadata = bundle.metadata.model_copy(update={"preprocess": preprocess})
    bundle.save(tmp_path / "bundle")
    written = json.loads((tmp_path / "bundle" / "metadata.json").read_text())["preprocess"]
    if crop == "none":
        assert set(written) == FIELDS_BEFORE_CROP
    else:
        assert written["crop"] == "head" and set(written) - FIELDS_BEFORE_CROP == {"crop"}
    assert load_bundle(tmp_path / "bundle").metadata.preprocess.crop == crop


def _eval_probabilities(out: Path) -> list[list[str]]:
    """The class-probability columns of ``predictions.csv``, row by row (sorted by path)."""
    with (out / "predictions.csv").open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["path"])
    return [[row[key] for key in row if key.startswith("p_")] for row in rows]


def test_eval_crop_frames_slices_as_a_cropping_bundle_would(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``brainmri eval --crop head`` scores a whole-slice bundle exactly as the same weights
    with ``crop: head`` in their metadata would, and says so; without it nothing changes."""
    data = tmp_path / "data"
    for index, name in enumerate(("glioma", "no_tumor")):
        head = generate_phantom(name, seed=index, size=96)
        slice_ = np.zeros((300, 260), np.uint8)
        slice_[40 + 30 * index : 136 + 30 * index, 120:216] = head  # lots of air around it
        (data / name).mkdir(parents=True)
        Image.fromarray(slice_).save(data / name / f"{name}.png")
    cropping = tmp_path / "cropping-bundle"
    shutil.copytree(random_bundle_dir, cropping)
    metadata = json.loads((cropping / "metadata.json").read_text())
    metadata["preprocess"]["crop"] = "head"
    (cropping / "metadata.json").write_text(json.dumps(metadata))

    def run(model: Path, out: str, *extra: str) -> dict:
        argv = ["eval", "--data", str(data), "--model", str(model), "--out", str(tmp_path / out)]
        assert main([*argv, "--mistakes", "0", "--backend", "eager", *extra]) == 0
        return json.loads((tmp_path / out / "eval_report.json").read_text())

    assert run(random_bundle_dir, "whole")["crop"] == "none"
    assert run(random_bundle_dir, "override", "--crop", "head")["crop"] == "head"
    assert "slices cropped to the head" in capsys.readouterr().out
    assert run(cropping, "metadata")["crop"] == "head"
    assert run(cropping, "undone", "--crop", "none")["crop"] == "none"
    override, by_metadata = (
        _eval_probabilities(tmp_path / "override"),
        _eval_probabilities(tmp_path / "metadata"),
    )
    assert override == by_metadata
    assert override != _eval_probabilities(tmp_path / "whole")  # the crop changed the input
    assert _eval_probabilities(tmp_path / "undone") == _eval_probabilities(tmp_path / "whole")
