"""Evaluations with no labelled image: predictions and a report with null metrics, no crash.

Listed files outside class folders carry no label (the original ``/metrics`` contract allows
it: ``true_class`` null, ``n_labeled`` 0), and a folder whose every file is unreadable has no
scored image at all; scikit-learn refuses both with "Found empty input array".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from brainmri.evaluation.metrics import classification_report
from brainmri.evaluation.report import (
    ERRORS_FILE,
    PLOT_FILES,
    PREDICTIONS_FILE,
    REPORT_FILE,
    EvalItem,
    evaluate,
)
from brainmri.inference.engine import InferenceEngine
from brainmri.models.bundle import load_bundle
from brainmri.phantom import phantom_png

NAMES = ["no_tumor", "glioma", "meningioma", "pituitary"]
# Every metric that needs a true label: written out here rather than imported, so the test
# does not take the implementation's word for which keys those are.
LABELLED_METRICS = (
    "acc_multiclass",
    "macro_f1",
    "per_class",
    "cm_multiclass",
    "acc_binary",
    "sensitivity",
    "specificity",
    "cm_binary",
    "roc_auc_binary",
    "ap_binary",
    "best_threshold_by_YoudenJ",
    "best_J",
    "ece",
    "roc_auc_per_class",
)


@pytest.fixture(scope="module")
def engine(random_bundle_dir: Path) -> InferenceEngine:
    return InferenceEngine(load_bundle(random_bundle_dir), device="cpu", batch_size=4)


def test_report_of_no_labels_has_every_key_with_null_metrics() -> None:
    labelled = classification_report(
        np.array([0, 1]), np.eye(4)[[0, 1]].astype(float), NAMES, threshold=0.4
    )
    empty = classification_report(np.zeros(0, dtype=int), np.zeros((0, 4)), NAMES, threshold=0.4)
    assert set(empty) == set(labelled)
    assert all(empty[key] is None for key in LABELLED_METRICS)
    assert empty["n"] == 0 and empty["threshold"] == 0.4 and empty["class_names"] == NAMES


def test_unlabelled_images_are_scored_with_null_metrics(
    engine: InferenceEngine, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    items = []
    for i in range(3):
        path = scans / f"s{i}.png"
        path.write_bytes(phantom_png("glioma", seed=i, size=64))
        items.append(EvalItem(str(path), None, path))
    out = tmp_path / "out"
    outcome = evaluate(engine, items, out, threshold=0.5)
    report = outcome.report
    assert (report["n_total"], report["n_scored"], report["n_labeled"]) == (3, 3, 0)
    for key in (*LABELLED_METRICS, "acc_binary@T", "cm_binary@T", "report_multiclass"):
        assert key in report and report[key] is None, key
    assert report["threshold_sweep"] == [] and report["reliability"] == []
    assert json.loads((out / REPORT_FILE).read_text()) == report  # nulls, not NaN or missing
    with (out / PREDICTIONS_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == [item.name for item in items]
    assert all(row["true_class"] == "" and row["correct"] == "" for row in rows)
    assert all(row["pred_class"] in NAMES for row in rows)
    assert report["artifacts"] == [PREDICTIONS_FILE, REPORT_FILE]  # no plot needs no labels
    assert not any((out / name).exists() for name in PLOT_FILES)


def test_a_folder_of_unreadable_files_reports_errors_not_a_crash(
    engine: InferenceEngine, tmp_path: Path
) -> None:
    items = [
        EvalItem("glioma/a.png", "glioma", b"\x89PNG\r\n\x1a\nbroken"),
        EvalItem("no_tumor/b.png", "no_tumor", b"not an image"),
    ]
    outcome = evaluate(engine, items, tmp_path, threshold=0.5)
    report = outcome.report
    assert (report["n_total"], report["n_scored"], report["n_labeled"], report["n_failed"]) == (
        2,
        0,
        0,
        2,
    )
    assert report["acc_multiclass"] is None and report["cm_multiclass"] is None
    assert report["artifacts"] == [PREDICTIONS_FILE, ERRORS_FILE, REPORT_FILE]
    with (tmp_path / ERRORS_FILE).open() as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == ["glioma/a.png", "no_tumor/b.png"]


def test_labelled_images_among_unlabelled_ones_are_still_measured(
    engine: InferenceEngine, tmp_path: Path
) -> None:
    """Only the labelled images count towards the metrics; the others are still predicted."""
    items = [
        EvalItem("x.png", None, phantom_png("glioma", seed=1, size=64)),
        EvalItem("glioma/y.png", "glioma", phantom_png("glioma", seed=2, size=64)),
        EvalItem("no_tumor/z.png", "no_tumor", phantom_png("no_tumor", seed=3, size=64)),
    ]
    report = evaluate(engine, items, tmp_path, threshold=0.5, plots_enabled=False).report
    assert (report["n_scored"], report["n_labeled"], report["n"]) == (3, 2, 2)
    assert report["acc_multiclass"] is not None
    assert sum(map(sum, report["cm_multiclass"])) == 2


def test_prediction_time_leaves_out_the_plots_and_files(
    engine: InferenceEngine, tmp_path: Path
) -> None:
    """An evaluate job's `inference_ms_per_image` (and the Prometheus figure built from it)
    counted the metrics, the plots and the CSVs; the outcome now times the predictions alone."""
    import time

    items = [
        EvalItem(f"{name}/{seed}.png", name, phantom_png(name, seed=seed, size=64))
        for name in ("glioma", "no_tumor", "meningioma", "pituitary")
        for seed in range(3)
    ]
    started = time.perf_counter()
    outcome = evaluate(engine, items, tmp_path, threshold=0.5)
    wall = time.perf_counter() - started
    assert len(outcome.report["artifacts"]) > 3  # the plots were drawn in this call
    assert 0 < outcome.prediction_seconds < wall
