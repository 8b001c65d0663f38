"""scripts/invert_slices.py: head-inverted copies of a manifest that `brainmri eval` can score."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brainmri.data.manifest import read_manifest
from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "invert_slices.py"


def test_copies_are_inverted_inside_the_head_and_keep_class_and_group(
    phantom_split: Path, tmp_path: Path
) -> None:
    split = phantom_split
    out = tmp_path / "inverted"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(split / "val.csv"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    originals = read_manifest(split / "val.csv")
    copies = read_manifest(out / "val.csv")
    assert f"wrote {len(originals)} inverted slices" in done.stdout
    assert [(s.class_name, s.group_id) for s in copies] == [
        (s.class_name, s.group_id) for s in originals
    ]
    for original, copy in list(zip(originals, copies, strict=True))[:5]:
        before = np.asarray(Image.open(original.path).convert("L"), dtype=np.float32)
        after = np.asarray(Image.open(copy.path), dtype=np.float32)
        assert after.shape == before.shape
        # air: no pixel brighter than the head level within 4 px; it must stay as it was
        near_bright = torch.nn.functional.max_pool2d(
            torch.from_numpy(before)[None, None], 9, stride=1, padding=4
        )[0, 0].numpy()
        air = near_bright <= 0.05 * 255
        assert air.mean() > 0.1
        np.testing.assert_array_equal(after[air], before[air])
        head = before > 60  # well inside the head
        np.testing.assert_allclose(after[head], 255.0 - before[head], atol=1.0)
