"""The shipped default model on real MRI slices (skipped where ../shared/data is absent).

The model card's test-split figures must be reproducible: the split is rebuilt with the
recorded command and the evaluation (fp32, as recorded) must give exactly the recorded report.
The card calls that test split duplicate-free: no test slice may have a near twin, mirrored or
flipped copies included, in the train or validation split.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from brainmri.data.builder import build_dataset
from brainmri.data.manifest import read_manifest
from brainmri.models.bundle import default_bundle_dir, load_bundle
from brainmri.phantom import FOLDER_NAMES

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
RECORD = default_bundle_dir() / "evaluation_test.json"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brainmri.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_default_model_is_shipped_and_verifies() -> None:
    bundle = load_bundle(default_bundle_dir())  # checks the weights' sha256
    assert bundle.metadata.arch.startswith("resnet")
    assert (default_bundle_dir() / "MODEL_CARD.md").is_file()
    assert RECORD.is_file()
    size = (default_bundle_dir() / bundle.metadata.weights_file).stat().st_size
    assert size < 50 * 1024 * 1024


def test_predict_on_a_real_png_named_jpg(real_data: Path) -> None:
    path = real_data / "notumor" / "Tr-no_1005.jpg"  # a PNG with a .jpg name (SOURCE.md)
    result = cli("predict", str(path), "--tta")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["model_version"] == load_bundle(default_bundle_dir()).version
    assert sum(output["class_probs"].values()) == pytest.approx(1.0, abs=1e-6)
    assert output["has_tumor"] == (output["tumor_prob"] >= output["threshold"])


def test_model_card_test_figures_reproduce(real_data: Path, tmp_path: Path) -> None:
    record = json.loads(RECORD.read_text())
    assert "--backend eager" in record["command"], "the record must say how it was computed"
    split = record["split"]
    summary = build_dataset(
        [real_data],
        tmp_path / "split",
        val_frac=split["val_frac"],
        test_frac=split["test_frac"],
        seed=split["seed"],
        progress=False,
        split_version=split["split_version"],
    )
    assert summary.fingerprint == split["data_fingerprint"], "the data folder changed"
    folder = tmp_path / "test"
    for sample in read_manifest(tmp_path / "split" / "test.csv"):
        target = folder / FOLDER_NAMES[sample.class_name] / sample.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(sample.path)
    # The record holds fp32 figures; on a CPU with AMX the `auto` backend would run bf16, whose
    # probabilities differ in the fifth decimal (ROC AUC 0.999098 against 0.999090).
    result = cli(
        "eval", "--data", str(folder), "--out", str(tmp_path / "eval"), "--backend", "eager"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval" / "eval_report.json").read_text())
    assert report["n"] == record["n"]
    assert report["cm_multiclass"] == record["cm_multiclass"]
    for key in (
        "acc_multiclass",
        "macro_f1",
        "roc_auc_binary",
        "sensitivity",
        "specificity",
        "ece",
        "threshold",
    ):
        assert report[key] == pytest.approx(record["metrics"][key], abs=1e-6), key

    # Duplicate-free: the held-out filter (flip-aware twins in train or val) keeps every row.
    script = Path(__file__).resolve().parents[2] / "scripts" / "held_out_subset.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "split"), "--out", str(tmp_path / "held")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert f"test: {record['n']} of {record['n']} rows have no near twin" in done.stdout


def test_lone_specks_in_raw_16bit_slices_leave_the_answers_as_they_were(
    real_data: Path, tmp_path: Path
) -> None:
    """Real slices as raw 16-bit values with 0.1% of the head at four times full scale: the
    default model must answer (almost) as on the 8-bit originals. With the old min..max
    scaling the brain went near black and validation macro-F1 fell from 0.967 to 0.141."""
    manifest = tmp_path / "slices.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "class_name", "group_id"])
        for folder in ("glioma", "meningioma", "notumor", "pituitary"):
            for i, path in enumerate(sorted((real_data / folder).iterdir())[:15]):
                writer.writerow([str(path), folder, f"{folder}-{i}"])
    script = Path(__file__).resolve().parents[2] / "scripts" / "raw_16bit_slices.py"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            str(manifest),
            "--out",
            str(tmp_path / "raw"),
            "--outliers",
            "0.001",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    answers = {}
    for name, data in (("8bit", manifest), ("raw", tmp_path / "raw" / "slices.csv")):
        result = cli("eval", "--data", str(data), "--out", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        with (tmp_path / name / "predictions.csv").open(newline="") as handle:
            answers[name] = [row["pred_class"] for row in csv.DictReader(handle)]
    assert len(answers["raw"]) == len(answers["8bit"]) == 60
    same = sum(a == b for a, b in zip(answers["8bit"], answers["raw"], strict=True))
    assert same >= 57, f"{same} of 60 answers kept"
