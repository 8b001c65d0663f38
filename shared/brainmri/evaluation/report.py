"""Batch evaluation: score images and write every report artifact.

Artifacts (all in ``out_dir``): ``predictions.csv``, ``eval_report.json``, ``errors.csv`` (only
when some inputs failed), and, when at least one scored image has a label, the plots
``cm_multiclass.png``, ``cm_binary.png``, ``roc_binary.png``, ``pr_binary.png``,
``threshold_sweep.png``, ``reliability.png``, ``roc_per_class.png``, and ``mistakes.png`` when
the model made any (:mod:`brainmri.evaluation.mistakes`). A run first removes these names (and
nothing else) from ``out_dir``, so a reused folder shows one run only.

A file that cannot be decoded is listed in ``errors.csv`` and excluded from the metrics; it
never shifts other predictions (each result is tied to its input by index). Images without a
label (``true_class`` None: listed files outside class folders) are scored and written to
``predictions.csv`` but left out of the metrics; with none labelled, the report keeps its keys
with the labelled metrics None (see ``metrics.unlabelled_report``).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from brainmri import DISCLAIMER
from brainmri.data.labels import binary_label
from brainmri.errors import DatasetError, InputError
from brainmri.evaluation import plots
from brainmri.evaluation.metrics import (
    binary_truth,
    bootstrap_ci,
    classification_report,
    reliability_bins,
    resampling_groups,
    threshold_sweep,
    tumor_probabilities,
)
from brainmri.evaluation.mistakes import MISTAKES_FILE, plot_mistakes, worst_mistakes
from brainmri.inference.engine import InferenceEngine, Source
from brainmri.inference.results import Prediction
from brainmri.jsonutil import jsonable
from brainmri.storage.base import ObjectNotFoundError

if TYPE_CHECKING:
    from brainmri.data.manifest import Sample

PLOT_FILES = (
    "cm_multiclass.png",
    "cm_binary.png",
    "roc_binary.png",
    "pr_binary.png",
    "threshold_sweep.png",
    "reliability.png",
    "roc_per_class.png",
)
REPORT_FILE = "eval_report.json"
PREDICTIONS_FILE = "predictions.csv"
ERRORS_FILE = "errors.csv"


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One input: how it is shown in reports, its label (if known) and how to read it.

    ``group`` is the dataset builder's near-duplicate group, when the input came from its
    manifest; the bootstrap resamples whole groups when every image has one.
    """

    name: str
    true_class: str | None
    source: Source
    group: str | None = None


def items_from_samples(samples: Iterable[Sample]) -> list[EvalItem]:
    """Evaluation inputs for manifest samples, each carrying its near-duplicate group so that
    every caller (CLI, trainer service) gets group-level bootstrap intervals alike."""
    return [EvalItem(str(s.path), s.class_name, s.path, group=s.group_id) for s in samples]


#: Every file :func:`evaluate` may write; a run removes these (and only these) first.
OUTPUT_FILES = (REPORT_FILE, PREDICTIONS_FILE, ERRORS_FILE, *PLOT_FILES, MISTAKES_FILE)


def clear_outputs(out_dir: Path) -> None:
    """Remove what an earlier run left in ``out_dir``, so a reused folder never mixes runs
    (an old ``errors.csv`` beside a report saying ``n_failed`` 0, plots of another model).
    Only this module's own file names are touched: ``out_dir`` may be a user's folder."""
    for name in OUTPUT_FILES:
        (out_dir / name).unlink(missing_ok=True)


@dataclass
class EvalOutcome:
    report: dict[str, Any]
    artifacts: list[Path]
    predictions: list[tuple[EvalItem, Prediction]] = field(default_factory=list)
    errors: list[tuple[EvalItem, InputError]] = field(default_factory=list)
    # Reading, decoding and the model's forward passes only: not metrics, plots or files.
    prediction_seconds: float = 0.0


def evaluate(
    engine: InferenceEngine,
    items: Sequence[EvalItem],
    out_dir: Path,
    *,
    threshold: float,
    tta: bool = False,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    plots_enabled: bool = True,
    bootstrap: int = 0,
    bootstrap_by: Literal["group", "image"] = "group",
    mistakes: int = 16,
) -> EvalOutcome:
    """Score ``items`` with ``engine`` and write the report artifacts into ``out_dir``;
    ``mistakes``: how many of the worst mistakes ``mistakes.png`` shows (0: none)."""
    if not items:
        raise DatasetError("nothing to evaluate: no images found")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_outputs(out_dir)
    done = 0

    def tick(_: int, __: object) -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done, len(items))

    started = time.perf_counter()
    results = engine.predict_sources(
        [item.source for item in items], tta=tta, progress=progress, on_result=tick
    )
    outcome = EvalOutcome(report={}, artifacts=[], prediction_seconds=time.perf_counter() - started)
    for item, result in zip(items, results, strict=True):
        if isinstance(result, InputError):
            outcome.errors.append((item, result))
        else:
            outcome.predictions.append((item, result))
    class_names = engine.class_names
    labelled = [(item, pred) for item, pred in outcome.predictions if item.true_class is not None]
    probs = np.array([[pred.class_probs[name] for name in class_names] for _, pred in labelled])
    probs = probs.reshape(len(labelled), len(class_names))
    # true_class is not None: ``labelled`` keeps only such items.
    y_true = np.array(
        [class_names.index(cast(str, item.true_class)) for item, _ in labelled], dtype=int
    )

    report = classification_report(y_true, probs, class_names, threshold=threshold)
    report.update(
        {
            "model_version": engine.version,
            "tta": tta,
            "tta_views": list(engine.tta_views) if tta else ["identity"],
            "n_total": len(items),
            "n_scored": len(outcome.predictions),
            "n_labeled": len(labelled),
            "n_failed": len(outcome.errors),
            "temperature": engine.metadata.temperature,
            # How slices were framed: the bundle's own, or `brainmri eval --crop`'s override.
            "crop": engine.metadata.preprocess.crop,
            "disclaimer": DISCLAIMER,
        }
    )
    # The original eval script's key spellings, kept for existing consumers.
    report["acc_binary@T"] = report["acc_binary"]
    report["cm_binary@T"] = report["cm_binary"]
    report["report_multiclass"] = report["per_class"]
    y_bin = binary_truth(y_true, class_names)
    tumor_prob = tumor_probabilities(probs, class_names) if len(labelled) else np.zeros(0)
    report["threshold_sweep"] = threshold_sweep(y_bin, tumor_prob) if len(labelled) else []
    if bootstrap and len(labelled) > 1:
        report["confidence_intervals"] = _confidence_intervals(
            labelled, y_true, probs, class_names, threshold, bootstrap, bootstrap_by
        )
    report["reliability"] = reliability_bins(probs, y_true) if len(labelled) else []

    outcome.artifacts.append(
        _write_predictions(out_dir, outcome.predictions, class_names, threshold)
    )
    if outcome.errors:
        outcome.artifacts.append(_write_errors(out_dir, outcome.errors))
    if plots_enabled and len(labelled):
        outcome.artifacts += _write_plots(
            out_dir, report, y_true, probs, y_bin, tumor_prob, class_names
        )
        gallery = _write_mistakes(engine, labelled, threshold, mistakes, out_dir)
        if gallery is not None:
            outcome.artifacts.append(gallery)
    report["artifacts"] = [path.name for path in outcome.artifacts] + [REPORT_FILE]
    report = jsonable(report)
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    outcome.artifacts.append(out_dir / REPORT_FILE)
    outcome.report = report
    return outcome


def _write_predictions(
    out_dir: Path,
    predictions: list[tuple[EvalItem, Prediction]],
    class_names: Sequence[str],
    threshold: float,
) -> Path:
    path = out_dir / PREDICTIONS_FILE
    columns = [
        "path",
        "true_class",
        "pred_class",
        "correct",
        *[f"p_{name}" for name in class_names],
        "tumor_prob",
        "has_tumor",
        "true_binary",
        "group",  # near-duplicate group from a builder manifest: `brainmri compare` resamples it
    ]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for item, pred in predictions:
            correct = (
                "" if item.true_class is None else int(pred.predicted_class == item.true_class)
            )
            writer.writerow(
                [
                    item.name,
                    item.true_class or "",
                    pred.predicted_class,
                    correct,
                    *[f"{pred.class_probs[name]:.6f}" for name in class_names],
                    f"{pred.tumor_prob:.6f}",
                    int(pred.has_tumor(threshold)),
                    "" if item.true_class is None else binary_label(item.true_class),
                    item.group or "",
                ]
            )
    return path


def _confidence_intervals(
    labelled: Sequence[tuple[EvalItem, Prediction]],
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    threshold: float,
    n_boot: int,
    bootstrap_by: Literal["group", "image"],
) -> dict[str, Any]:
    """Bootstrap intervals over whole groups when every image has one (and groups are asked
    for), else over images; ``method`` says which, so reports stay comparable."""
    groups = resampling_groups([item.group for item, _ in labelled], bootstrap_by)
    intervals = bootstrap_ci(
        y_true, probs, class_names, threshold=threshold, n_boot=n_boot, groups=groups
    )
    unit = f"{len(set(groups))} near-duplicate groups" if groups else f"{len(labelled)} images"
    return {
        "method": f"percentile bootstrap over {unit}, {n_boot} resamples, 95%",
        "unit": "group" if groups else "image",
        **{key: list(bounds) for key, bounds in intervals.items()},
    }


def _write_mistakes(
    engine: InferenceEngine,
    labelled: Sequence[tuple[EvalItem, Prediction]],
    threshold: float,
    limit: int,
    out_dir: Path,
) -> Path | None:
    """``mistakes.png``; each shown slice is read again (as the engine reads any input, so a
    worker decodes it in its sandbox), a handful of files rather than every slice kept."""
    if limit <= 0:
        return None
    every = worst_mistakes(labelled, threshold)
    if not every:
        return None

    def slice_of(item: EvalItem) -> np.ndarray | None:
        try:
            return engine.prepare_source(item.source).decoded.display_slice
        except (InputError, ObjectNotFoundError, OSError):
            return None  # gone or changed since it was scored: leave its tile out

    return plot_mistakes(every[:limit], slice_of, threshold, len(every), out_dir / MISTAKES_FILE)


def _write_errors(out_dir: Path, errors: list[tuple[EvalItem, InputError]]) -> Path:
    path = out_dir / ERRORS_FILE
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "error_code", "message"])
        for item, error in errors:
            writer.writerow([item.name, error.code, str(error)])
    return path


def _write_plots(
    out_dir: Path,
    report: dict[str, Any],
    y_true: np.ndarray,
    probs: np.ndarray,
    y_bin: np.ndarray,
    tumor_prob: np.ndarray,
    class_names: Sequence[str],
) -> list[Path]:
    threshold = report["threshold"]
    return [
        plots.plot_confusion(
            report["cm_multiclass"],
            class_names,
            f"Confusion matrix - 4 classes (n = {report['n']})",
            out_dir / "cm_multiclass.png",
        ),
        plots.plot_confusion(
            report["cm_binary"],
            ["no tumor", "tumor"],
            f"Tumor vs no tumor at threshold {threshold:.2f}",
            out_dir / "cm_binary.png",
        ),
        plots.plot_roc_binary(
            y_bin, tumor_prob, report["roc_auc_binary"], threshold, out_dir / "roc_binary.png"
        ),
        plots.plot_pr_binary(y_bin, tumor_prob, report["ap_binary"], out_dir / "pr_binary.png"),
        plots.plot_threshold_sweep(
            report["threshold_sweep"],
            threshold,
            report["best_threshold_by_YoudenJ"],
            out_dir / "threshold_sweep.png",
        ),
        plots.plot_reliability(report["reliability"], report["ece"], out_dir / "reliability.png"),
        plots.plot_roc_per_class(
            y_true, probs, class_names, report["roc_auc_per_class"], out_dir / "roc_per_class.png"
        ),
    ]
