"""benchmarks/reference_loop.py: the issue's plain loop, as a bundle `brainmri eval` can score."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks.reference_loop import augment_batch
from benchmarks.reference_loop import main as reference_loop
from brainmri.cli.main import main as brainmri
from brainmri.models.bundle import load_bundle


def test_augmentation_keeps_shape_and_range_and_is_seeded() -> None:
    images = torch.rand(8, 1, 32, 32)
    first = augment_batch(images, torch.Generator().manual_seed(1))
    again = augment_batch(images, torch.Generator().manual_seed(1))
    other = augment_batch(images, torch.Generator().manual_seed(2))
    assert first.shape == images.shape
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert not torch.allclose(first, images)


def test_the_loop_learns_phantoms_and_saves_a_grey_squash_bundle(
    phantom_split: Path, tmp_path: Path
) -> None:
    out = tmp_path / "loop"
    args = ["--train-csv", str(phantom_split / "train.csv"), "--out", str(out)]
    args += ["--epochs", "10", "--img-size", "64", "--batch-size", "16", "--lr", "4e-3"]
    args += ["--precision", "fp32"]
    assert reference_loop(args) == 0

    bundle = load_bundle(out)
    assert bundle.metadata.preprocess.in_chans == 1
    assert bundle.metadata.preprocess.resize == "squash"
    assert bundle.metadata.provenance["trainer"] == "benchmarks/reference_loop.py"
    evaluation = tmp_path / "eval"
    eval_args = ["eval", "--data", str(phantom_split / "val.csv"), "--model", str(out)]
    code = brainmri([*eval_args, "--out", str(evaluation), "--backend", "eager"])
    assert code == 0
    report = json.loads((evaluation / "eval_report.json").read_text())
    assert report["model_version"] == bundle.version
    assert report["acc_multiclass"] > 0.5  # four classes: chance is 0.25 (0.72 when written)
