"""The shared copy writer behind data packs and inverted-slice probes: all or nothing."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainmri.data.copies import write_copies


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(pixels * 255.0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_copies_decode_back_to_the_encoded_pixels(phantom_split: Path, tmp_path: Path) -> None:
    copies = write_copies(
        phantom_split / "val.csv", tmp_path, _png, suffix="png", progress=False, what="copies"
    )
    rows = copies.table.read_text().splitlines()
    assert len(rows) == copies.n + 1 and copies.n > 0
    first = tmp_path / rows[1].split(",")[0]
    assert first.suffix == ".png" and first.parent.parent == tmp_path / "val"
    assert Image.open(first).mode == "L"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val", "val.csv"]


def test_an_encoder_failure_leaves_nothing_behind(phantom_split: Path, tmp_path: Path) -> None:
    calls = {"n": 0}

    def fail_on_third(pixels: np.ndarray) -> bytes:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full while encoding")
        if calls["n"] > 3:
            time.sleep(0.2)  # still busy when the failure is seen, so the rest stays queued
        return _png(pixels)

    with pytest.raises(RuntimeError, match="disk full"):
        write_copies(
            phantom_split / "val.csv",
            tmp_path,
            fail_on_third,
            suffix="png",
            workers=1,
            progress=False,
        )
    assert calls["n"] <= 4  # the failing slice, at most one already started, none queued
    assert list(tmp_path.iterdir()) == []
