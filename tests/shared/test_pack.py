"""Data packs: letterboxed JPEG copies that a remote trainer reads like the originals."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brainmri.cli.main import main
from brainmri.data.builder import dataset_fingerprint
from brainmri.data.manifest import read_manifest
from brainmri.data.pack import pack_manifest
from brainmri.errors import DatasetError
from brainmri.preprocess import PreprocessConfig
from brainmri.training.data import build_cache


@pytest.fixture(scope="module")
def split(phantom_split: Path) -> Path:
    return phantom_split


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_pack_keeps_rows_labels_groups_and_source_hashes(split: Path, tmp_path: Path) -> None:
    summary = pack_manifest(split / "train.csv", tmp_path / "pack", size=74, progress=False)
    source, packed = _rows(split / "train.csv"), _rows(tmp_path / "pack" / "train.csv")
    assert len(packed) == len(source) == summary.copies.n
    for original, copy in zip(source, packed, strict=True):
        for column in ("class_name", "multiclass_label", "binary_label", "group_id"):
            assert copy[column] == original[column]
        assert (
            copy["source_sha256"] == hashlib.sha256(Path(original["path"]).read_bytes()).hexdigest()
        )
        assert not Path(copy["path"]).is_absolute()
        with Image.open(tmp_path / "pack" / copy["path"]) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "L", (74, 74))
    expected = dataset_fingerprint(
        (hashlib.sha256(Path(s.path).read_bytes()).hexdigest(), s.class_name)
        for s in read_manifest(split / "train.csv")
    )
    index = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert (
        index["manifests"]["train"]["source_fingerprint"]
        == expected
        == summary.copies.source_fingerprint
    )
    assert index["manifests"]["train"]["n"] == len(source)


def test_a_moved_pack_gives_the_trainer_the_originals_cache(split: Path, tmp_path: Path) -> None:
    """Read from a new place, a pack made at the cache size yields (to JPEG precision) the
    cache the trainer builds from the full-resolution originals; a same-size cache of the
    pack is the decoded JPEG itself, not resampled again."""
    pack_manifest(split / "train.csv", tmp_path / "pack", size=74, progress=False)
    moved = tmp_path / "elsewhere" / "pack"
    shutil.copytree(tmp_path / "pack", moved)
    shutil.rmtree(tmp_path / "pack")
    preprocess = PreprocessConfig(img_size=64)
    classes = ["no_tumor", "glioma", "meningioma", "pituitary"]
    samples = read_manifest(moved / "train.csv")
    assert all(sample.path.is_relative_to(moved) for sample in samples)
    packed = build_cache(samples, classes, preprocess, size=74, as_uint8=True, progress=False)
    original = build_cache(
        read_manifest(split / "train.csv"), classes, preprocess, size=74, as_uint8=True,
        progress=False,
    )  # fmt: skip
    assert torch.equal(packed.labels, original.labels)
    difference = (packed.images.float() - original.images.float()).abs()
    assert float(difference.mean()) < 2.0  # grey levels of 255: the JPEG re-encoding only
    first = np.asarray(Image.open(samples[0].path), dtype=np.uint8)
    assert np.array_equal(packed.images[0, 0].numpy(), first)
    assert {s.group_id for s in samples} == {s.group_id for s in read_manifest(split / "train.csv")}


def test_pack_refuses_to_replace_a_pack_and_skips_unreadable_files(
    split: Path, tmp_path: Path
) -> None:
    rows = _rows(split / "val.csv")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    manifest = tmp_path / "val.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*rows, {**rows[0], "path": str(broken)}])
    summary = pack_manifest(manifest, tmp_path / "pack", size=64, progress=False)
    assert summary.copies.n == len(rows)
    assert len(summary.copies.skipped) == 1 and "broken.png" in summary.copies.skipped[0]
    assert len(_rows(tmp_path / "pack" / "val.csv")) == len(rows)
    with pytest.raises(DatasetError, match="already holds a pack"):
        pack_manifest(manifest, tmp_path / "pack", size=64, progress=False)
    with pytest.raises(DatasetError, match="size"):
        pack_manifest(split / "test.csv", tmp_path / "pack", size=8, progress=False)
    assert not list((tmp_path / "pack").glob(".*partial"))  # nothing half-written


def test_cli_pack(split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["dataset", "pack", str(split / "val.csv"), "--out", str(tmp_path / "p"), "--size"]
    assert main([*argv, "64", "--quality", "95"]) == 0
    printed = capsys.readouterr().out
    assert "at 64 px, JPEG q95" in printed and "source fingerprint" in printed
    assert main([*argv, "64"]) == 2  # a second pack of the same manifest is refused
    assert "already holds a pack" in capsys.readouterr().err
