"""scripts/held_out_subset.py: the rows of a split that no model has learnt from a twin of."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageOps

from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "held_out_subset.py"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_a_current_split_keeps_every_row(phantom_split: Path, tmp_path: Path) -> None:
    """The builder groups flipped copies, so its val and test hold no twin of what came
    before them."""
    printed = run(phantom_split, "--out", tmp_path / "kept")
    for split in ("val", "test"):
        rows = read_csv(phantom_split / f"{split}.csv")
        kept = read_csv(tmp_path / "kept" / f"{split}.csv")
        assert [row["path"] for row in kept] == [row["path"] for row in rows]
        assert all(row["group_id"].startswith("f") for row in kept)
        assert f"{split}: {len(rows)} of {len(rows)} rows have no near twin" in printed


def test_another_models_training_rows_are_left_out(phantom_split: Path, tmp_path: Path) -> None:
    """Rows with a mirrored, flipped or identical copy in the other split's train or val go;
    the other split's test rows do not count, since that model never learnt from them."""
    val = read_csv(phantom_split / "val.csv")
    test = read_csv(phantom_split / "test.csv")
    copies = tmp_path / "copies"
    copies.mkdir()

    def copy_of(row: dict[str, str], name: str, transform: str) -> dict[str, str]:
        image = Image.open(row["path"])
        image = {"mirror": ImageOps.mirror, "flip": ImageOps.flip}.get(
            transform, lambda same: same
        )(image)
        image.save(copies / name)
        return {**row, "path": str(copies / name)}

    other = tmp_path / "old-split"
    write_csv(
        other / "train.csv", [copy_of(val[0], "a.png", "mirror"), copy_of(test[0], "b.png", "flip")]
    )
    write_csv(other / "val.csv", [copy_of(test[1], "c.png", "same")])
    write_csv(other / "test.csv", [copy_of(test[2], "d.png", "same")])

    printed = run(phantom_split, "--out", tmp_path / "fair", "--also-learnt-from", other)

    kept_val = {row["path"] for row in read_csv(tmp_path / "fair" / "val.csv")}
    kept_test = {row["path"] for row in read_csv(tmp_path / "fair" / "test.csv")}
    assert kept_val == {row["path"] for row in val[1:]}
    assert kept_test == {row["path"] for row in test if row is not test[0] and row is not test[1]}
    assert test[2]["path"] in kept_test  # a twin in the other model's test split is no reason
    assert "old-split#0:train" in printed
