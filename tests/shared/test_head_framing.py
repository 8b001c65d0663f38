"""scripts/head_framing.py: how much of the frame the head fills, per class."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from brainmri.phantom import generate_phantom
from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "head_framing.py"


def test_a_class_framed_with_more_air_shows_a_smaller_head_share(tmp_path: Path) -> None:
    rows = ["path,class_name"]
    for seed in range(6):
        tight = generate_phantom("glioma", seed=seed, size=120)  # the head fills the frame
        Image.fromarray(tight).save(tmp_path / f"tight{seed}.png")
        rows.append(f"tight{seed}.png,glioma")
        loose = np.zeros((240, 240), np.uint8)  # the same kind of head in twice the frame
        loose[60:180, 60:180] = generate_phantom("pituitary", seed=seed, size=120)
        Image.fromarray(loose).save(tmp_path / f"loose{seed}.png")
        rows.append(f"loose{seed}.png,pituitary")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows.append("broken.png,glioma")
    (tmp_path / "slices.csv").write_text("\n".join(rows) + "\n")

    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "slices.csv")],
        capture_output=True,
        text=True,
        check=True,
    )
    medians = {
        line.split()[0]: (int(line.split()[1]), float(line.split()[3]))
        for line in done.stdout.splitlines()[1:]
    }
    assert medians["glioma"][0] == 6 and medians["pituitary"][0] == 6
    tight_share, loose_share = medians["glioma"][1], medians["pituitary"][1]
    assert 0.85 <= tight_share <= 1.0  # the phantom's skull spans ~0.9 of its frame
    assert abs(loose_share - tight_share / 2) <= 0.02  # the same head in twice the frame
    assert "1 unreadable file(s) left out" in done.stderr
