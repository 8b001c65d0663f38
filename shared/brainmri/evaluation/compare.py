"""Paired comparison of two evaluation runs on the same labelled images.

Why: deciding whether a new model is better than the one in use from two separate reports
invites the mistake this project's own model card records - a 0.0009 macro-F1 "gain" (one
image) taken for an improvement. Scoring both models on the same bootstrap resamples, by
near-duplicate group, says how large the difference is and how sure we can be of its sign.

Inputs are two ``brainmri eval`` output folders (``predictions.csv`` + ``eval_report.json``);
each model is judged at the threshold its own report used.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from brainmri.errors import BrainMRIError
from brainmri.evaluation.metrics import paired_bootstrap, resampling_groups
from brainmri.evaluation.report import PREDICTIONS_FILE, REPORT_FILE


class ComparisonError(BrainMRIError):
    """The two runs cannot be compared: missing files or different images or classes."""

    code = "runs_not_comparable"


@dataclass(frozen=True)
class EvalRun:
    """The labelled rows of one ``brainmri eval`` output folder, keyed by image path."""

    folder: Path
    model_version: str | None
    threshold: float
    class_names: list[str]
    rows: dict[str, tuple[str, np.ndarray, str]]  # path -> (true class, probabilities, group)


def load_eval_run(folder: Path) -> EvalRun:
    folder = Path(folder)
    predictions, report_file = folder / PREDICTIONS_FILE, folder / REPORT_FILE
    for needed in (predictions, report_file):
        if not needed.is_file():
            raise ComparisonError(f"{folder} is not a `brainmri eval` output: no {needed.name}")
    report = json.loads(report_file.read_text())
    with predictions.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        class_names = [c.removeprefix("p_") for c in columns if c.startswith("p_")]
        rows: dict[str, tuple[str, np.ndarray, str]] = {}
        for row in reader:
            if not row["true_class"]:
                continue  # unlabelled images carry no evidence either way
            if row["path"] in rows:
                raise ComparisonError(f"{predictions}: {row['path']} is listed twice")
            probs = np.array([float(row[f"p_{name}"]) for name in class_names])
            rows[row["path"]] = (row["true_class"], probs, row.get("group") or "")
    if not class_names or not rows:
        raise ComparisonError(f"{predictions} has no labelled predictions")
    return EvalRun(
        folder=folder,
        model_version=report.get("model_version"),
        threshold=float(report["threshold"]),
        class_names=class_names,
        rows=rows,
    )


def compare_runs(
    run_a: EvalRun,
    run_b: EvalRun,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    bootstrap_by: Literal["group", "image"] = "group",
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """B against A on the images both scored (which must be all of them, with equal labels)."""
    if run_a.class_names != run_b.class_names:
        raise ComparisonError(
            f"class order differs: {run_a.class_names} against {run_b.class_names}"
        )
    only_a, only_b = run_a.rows.keys() - run_b.rows.keys(), run_b.rows.keys() - run_a.rows.keys()
    if only_a or only_b:
        example = sorted(only_a or only_b)[0]
        raise ComparisonError(
            f"the runs scored different images ({len(only_a)} only in A, {len(only_b)} only "
            f"in B, e.g. {example}); evaluate both models on the same data"
        )
    paths = sorted(run_a.rows)
    disagree = [p for p in paths if run_a.rows[p][0] != run_b.rows[p][0]]
    if disagree:
        raise ComparisonError(f"{len(disagree)} images have different labels, e.g. {disagree[0]}")
    class_names = run_a.class_names
    y_true = np.array([class_names.index(run_a.rows[p][0]) for p in paths])
    probs_a = np.stack([run_a.rows[p][1] for p in paths])
    probs_b = np.stack([run_b.rows[p][1] for p in paths])
    groups = resampling_groups([run_a.rows[p][2] for p in paths], bootstrap_by)
    metrics = paired_bootstrap(
        y_true,
        probs_a,
        probs_b,
        class_names,
        threshold_a=run_a.threshold,
        threshold_b=run_b.threshold,
        n_boot=n_boot,
        seed=seed,
        groups=groups,
        on_progress=on_progress,
    )
    return {
        "n": len(paths),
        "a": {
            "folder": str(run_a.folder),
            "model_version": run_a.model_version,
            "threshold": run_a.threshold,
        },
        "b": {
            "folder": str(run_b.folder),
            "model_version": run_b.model_version,
            "threshold": run_b.threshold,
        },
        "bootstrap": {
            "resamples": n_boot,
            "seed": seed,
            "unit": "group" if groups else "image",
            "units": len(set(groups)) if groups else len(paths),
        },
        "metrics": metrics,
    }


def verdict(diff: dict[str, Any]) -> str:
    """One word per metric: is B's advantage (or deficit) outside the 95% interval of noise?"""
    low, high = diff["ci"]
    if low == high == 0:
        return "same on every resample"
    if low > 0:
        return "B better"
    if high < 0:
        return "A better"
    return "no clear difference"
