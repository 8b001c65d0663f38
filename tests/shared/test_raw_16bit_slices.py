"""scripts/raw_16bit_slices.py: raw 16-bit copies, with and without lone bright specks, that
`brainmri eval` can score (the probe behind the decoder's speck-aware scaling)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainmri.data.manifest import read_manifest
from brainmri.imaging.decode import decode_image
from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "raw_16bit_slices.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("outliers", [0.0, 0.01])
def test_copies_hold_raw_values_and_the_asked_share_of_specks(
    phantom_split: Path, tmp_path: Path, outliers: float
) -> None:
    out = tmp_path / "raw"
    done = run(str(phantom_split / "val.csv"), "--out", str(out), "--outliers", str(outliers))
    assert done.returncode == 0, done.stderr
    originals = read_manifest(phantom_split / "val.csv")
    copies = read_manifest(out / "val.csv")
    assert f"wrote {len(originals)} 16-bit slices" in done.stdout
    assert [(s.class_name, s.group_id) for s in copies] == [
        (s.class_name, s.group_id) for s in originals
    ]
    for original, copy in list(zip(originals, copies, strict=True))[:4]:
        x = decode_image(original.path.read_bytes()).pixels
        with Image.open(copy.path) as image:
            assert image.mode.startswith("I")  # 16-bit grey, not 8-bit
            raw = np.asarray(image, dtype=np.int64)
        expected = np.round(np.clip(x, 0, 1) * 4095)
        specks = raw == 4 * 4095
        head = x > 0.1
        assert not specks[~head].any()  # specks land in the head only
        assert specks.sum() == (max(1, round(outliers * head.sum())) if outliers else 0)
        np.testing.assert_array_equal(raw[~specks], expected[~specks])


def test_the_same_slice_gets_the_same_specks_on_every_run(
    phantom_split: Path, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        done = run(
            str(phantom_split / "val.csv"), "--out", str(tmp_path / name), "--outliers", "0.01"
        )
        assert done.returncode == 0, done.stderr
    first = read_manifest(tmp_path / "a" / "val.csv")[0].path
    second = read_manifest(tmp_path / "b" / "val.csv")[0].path
    assert first.read_bytes() == second.read_bytes()


def test_an_outlier_share_outside_0_1_is_refused(phantom_split: Path, tmp_path: Path) -> None:
    done = run(str(phantom_split / "val.csv"), "--out", str(tmp_path / "x"), "--outliers", "1.5")
    assert done.returncode == 2
    assert "--outliers" in done.stderr
    assert not (tmp_path / "x").exists()
