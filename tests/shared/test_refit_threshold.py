"""scripts/refit_threshold.py: a bundle's threshold re-fitted on its own validation report."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from brainmri.cli.main import main
from brainmri.evaluation.calibration import choose_threshold
from brainmri.models.bundle import load_bundle, sha256_file
from tests.conftest import PROJECT_ROOT, make_bundle

SCRIPT = PROJECT_ROOT / "scripts" / "refit_threshold.py"


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True
    )


def test_the_threshold_is_the_policys_choice_on_the_report_and_nothing_else_changes(
    phantom_split: Path, tmp_path: Path
) -> None:
    bundle_dir = tmp_path / "bundle"
    make_bundle(bundle_dir, img_size=32, seed=3)
    weights_before = sha256_file(bundle_dir / "model.safetensors")
    before = load_bundle(bundle_dir)
    evaluation = tmp_path / "val-eval"
    data = phantom_split / "val.csv"
    assert (
        main(["eval", "--data", str(data), "--model", str(bundle_dir), "--out", str(evaluation)])
        == 0
    )

    done = run(bundle_dir, evaluation, "--policy", "youden")

    assert done.returncode == 0, done.stderr
    with (evaluation / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = choose_threshold(
        np.array([row["true_class"] != "no_tumor" for row in rows], dtype=int),
        np.array([float(row["tumor_prob"]) for row in rows]),
        "youden",
    )
    after = load_bundle(bundle_dir)  # the weights still verify
    assert after.metadata.default_threshold == expected.threshold
    assert after.version == before.version
    assert sha256_file(bundle_dir / "model.safetensors") == weights_before
    refit = json.loads((bundle_dir / "metadata.json").read_text())["metrics"]["threshold_refit"]
    assert refit["n"] == len(rows) and refit["policy"] == "youden"
    assert refit["replaced_threshold"] == before.metadata.default_threshold
    assert f"-> {expected.threshold:g}" in done.stdout


def test_a_report_of_another_model_is_refused(phantom_split: Path, tmp_path: Path) -> None:
    scored, other = tmp_path / "scored", tmp_path / "other"
    make_bundle(scored, img_size=32, seed=1)
    make_bundle(other, img_size=32, seed=2)
    evaluation = tmp_path / "eval"
    data = str(phantom_split / "val.csv")
    assert main(["eval", "--data", data, "--model", str(scored), "--out", str(evaluation)]) == 0
    before = (other / "metadata.json").read_text()

    done = run(other, evaluation)

    assert done.returncode != 0
    assert "scored" in done.stderr and "not" in done.stderr
    assert (other / "metadata.json").read_text() == before
