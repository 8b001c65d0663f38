"""Dataset builder: aliases, duplicate handling, group-safe stratified splits, summary."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from brainmri.cli.main import main
from brainmri.data.builder import CSV_COLUMNS, build_dataset, stratified_group_split
from brainmri.data.labels import canonical_class
from brainmri.data.manifest import load_samples, read_manifest
from brainmri.errors import DatasetError
from brainmri.phantom import write_phantom_dataset


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("notumor", "no_tumor"),
        ("No_Tumor", "no_tumor"),
        ("no-tumour", "no_tumor"),
        ("glioma_tumor", "glioma"),
        ("Meningioma_Tumor", "meningioma"),
        ("meningioma_tomor", "meningioma"),
        ("pituitary_tumor", "pituitary"),
        ("PITUITARY", "pituitary"),
        ("tumor", None),
        ("images", None),
    ],
)
def test_folder_aliases(folder: str, expected: str | None) -> None:
    assert canonical_class(folder) == expected


@pytest.fixture
def messy_dataset(tmp_path: Path) -> Path:
    """Phantoms plus exact copies, near copies, a cross-class copy and an unreadable file."""
    root = tmp_path / "data"
    write_phantom_dataset(root, per_class=20, size=96, seed=3)
    glioma = sorted((root / "glioma").glob("*.png"))
    shutil.copy(glioma[0], root / "glioma" / "exact_copy.png")
    shutil.copy(glioma[1], root / "glioma" / "exact_copy2.png")
    for i in range(3):  # re-encoded, resized near duplicates of one image
        Image.open(glioma[2]).resize((90 - 4 * i, 90 - 4 * i)).save(
            root / "glioma" / f"near_{i}.jpg", quality=92
        )
    shutil.copy(glioma[3], root / "notumor" / "mislabelled_copy.png")
    original = Image.open(glioma[4])  # mirrored and flipped copies, as the public data holds
    ImageOps.mirror(original).save(root / "glioma" / "mirror_lr.png")
    ImageOps.flip(original).save(root / "glioma" / "mirror_ud.png")
    original.rotate(180).save(root / "glioma" / "mirror_180.png")
    (root / "pituitary" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "README.txt").write_text("not in a class folder")
    return root


def test_build_handles_duplicates_and_never_splits_a_group(
    messy_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "split"
    summary = build_dataset(
        [messy_dataset], out, val_frac=0.2, test_frac=0.2, seed=1, progress=False
    )
    assert summary.exact_duplicates_dropped == 2
    assert summary.conflicting_label_copies_dropped == 2  # both copies of the cross-class image
    assert len(summary.unreadable) == 1
    assert "broken.png" in summary.unreadable[0]
    assert summary.unlabelled_files == 1
    assert summary.near_duplicate_groups >= 1
    assert summary.images_in_near_duplicate_groups >= 4

    rows = {
        split: list(csv.DictReader((out / f"{split}.csv").open()))
        for split in ("train", "val", "test")
    }
    for split_rows in rows.values():
        assert tuple(split_rows[0]) == CSV_COLUMNS
    split_of_group: dict[str, set[str]] = {}
    for split, split_rows in rows.items():
        for row in split_rows:
            split_of_group.setdefault(row["group_id"], set()).add(split)
    assert all(len(splits) == 1 for splits in split_of_group.values())
    near = [
        row
        for split_rows in rows.values()
        for row in split_rows
        if "near_" in row["path"] or row["path"].endswith("glioma_0002.png")
    ]
    assert len({row["group_id"] for row in near}) == 1
    mirrored = [
        row
        for split_rows in rows.values()
        for row in split_rows
        if "mirror_" in row["path"] or row["path"].endswith("glioma_0004.png")
    ]
    assert len(mirrored) == 4
    assert len({row["group_id"] for row in mirrored}) == 1  # one group, so one split
    assert summary.near_duplicate_pairs["mirrored"] >= 1
    assert summary.near_duplicate_pairs["upside down"] >= 1
    for split in ("val", "test"):
        assert set(Counter(row["class_name"] for row in rows[split])) == {
            "no_tumor",
            "glioma",
            "meningioma",
            "pituitary",
        }
    assert (out / "summary.json").exists()
    assert "data fingerprint" in summary.table()


def test_as_stored_grouping_lets_mirrored_copies_straddle_splits(
    messy_dataset: Path, tmp_path: Path
) -> None:
    """Split version 1 is the builder before flips were compared (kept to rebuild its splits):
    a slice and its mirror image correlate far below the threshold as stored, so they are
    separate groups and can land in different splits."""
    summary = build_dataset(
        [messy_dataset], tmp_path / "old", seed=1, progress=False, split_version=1
    )
    rows = [
        row
        for split in ("train", "val", "test")
        for row in csv.DictReader((tmp_path / "old" / f"{split}.csv").open())
        if "mirror_" in row["path"] or row["path"].endswith("glioma_0004.png")
    ]
    assert len({row["group_id"] for row in rows}) == 4
    assert set(summary.near_duplicate_pairs) == {"as stored"}


def test_adding_images_never_moves_a_training_image_into_test(tmp_path: Path) -> None:
    """A retrain's promotion gate scores production on the test split of the grown dataset:
    images production trained on must not be there. Split version 2 places groups in hash
    order, so growing the data by a fifth moves no training image to test, and most images
    keep their split; version 1's reshuffle moves many."""
    root = tmp_path / "data"
    write_phantom_dataset(root, per_class=40, size=64, seed=5)

    def splits_of(out: Path, version: int) -> dict[str, str]:
        build_dataset([root], out, seed=3, progress=False, split_version=version)
        return {
            Path(row["path"]).name: split
            for split in ("train", "val", "test")
            for row in csv.DictReader((out / f"{split}.csv").open())
        }

    before = {version: splits_of(tmp_path / f"v{version}-a", version) for version in (1, 2)}
    write_phantom_dataset(tmp_path / "more", per_class=8, size=64, seed=77)
    for path in (tmp_path / "more").rglob("*.png"):
        shutil.copy(path, root / path.parent.name / f"new_{path.name}")
    after = {version: splits_of(tmp_path / f"v{version}-b", version) for version in (1, 2)}

    def moved(version: int) -> Counter[tuple[str, str]]:
        return Counter(
            (split, after[version][name])
            for name, split in before[version].items()
            if after[version][name] != split
        )

    assert moved(2)[("train", "test")] == 0
    assert sum(moved(2).values()) <= 0.1 * len(before[2])
    assert sum(moved(1).values()) > 3 * max(1, sum(moved(2).values()))  # what it fixes


def test_fingerprint_changes_only_with_the_data(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_phantom_dataset(root, per_class=5, size=64, seed=1)
    first = build_dataset([root], tmp_path / "a", progress=False).fingerprint
    assert build_dataset([root], tmp_path / "b", seed=9, progress=False).fingerprint == first
    write_phantom_dataset(tmp_path / "extra", per_class=1, size=64, seed=2, classes=["glioma"])
    shutil.copy(next((tmp_path / "extra" / "glioma").glob("*.png")), root / "glioma" / "new.png")
    assert build_dataset([root], tmp_path / "c", progress=False).fingerprint != first


def test_stratified_group_split_proportions() -> None:
    labels = ["a"] * 100 + ["b"] * 100
    groups = list(range(200))
    splits = stratified_group_split(labels, groups, val_frac=0.1, test_frac=0.2, seed=0)
    counts = Counter(zip(labels, splits, strict=True))
    assert counts[("a", "test")] == 20
    assert counts[("b", "val")] == 10


def test_bad_fractions_and_empty_roots(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        stratified_group_split(["a"], [0], val_frac=0.6, test_frac=0.5, seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError):
        build_dataset([tmp_path / "empty"], tmp_path / "out", progress=False)


def test_manifest_and_folder_loading(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_phantom_dataset(root, per_class=3, size=64, seed=1)
    assert Counter(s.class_name for s in load_samples(root)) == {
        "no_tumor": 3,
        "glioma": 3,
        "meningioma": 3,
        "pituitary": 3,
    }
    legacy = tmp_path / "legacy.csv"
    legacy.write_text(
        "path,class_name,multiclass_label,binary_label\n"
        "d/glioma/glioma_0000.png,glioma_tumor,1,1\n"
        "d/notumor/no_tumor_0000.png,,0,0\n"
    )
    samples = read_manifest(legacy)
    assert [s.class_name for s in samples] == ["glioma", "no_tumor"]
    assert samples[0].path == (root / "glioma" / "glioma_0000.png").resolve()


def test_cli_dataset_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "d"
    write_phantom_dataset(root, per_class=6, size=64, seed=1)
    assert (
        main(
            [
                "dataset",
                "build",
                "--root",
                str(root),
                "--out",
                str(tmp_path / "o"),
                "--val-frac",
                "0.2",
                "--test_frac",
                "0.2",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert "exact duplicates dropped: 0" in output
    assert {p.name for p in (tmp_path / "o").iterdir()} == {
        "train.csv",
        "val.csv",
        "test.csv",
        "summary.json",
    }
