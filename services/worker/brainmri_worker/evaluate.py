"""The evaluate job: a folder or S3 prefix of class-named subfolders (or explicit paths)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from brainmri.errors import DatasetError
from brainmri.evaluation.report import EvalItem, evaluate
from brainmri.inference.engine import InferenceEngine
from brainmri.inference.results import resolve_threshold
from brainmri.jobs.artifacts import artifact_url
from brainmri.jobs.runtime import JobContext, JobOutcome
from brainmri.sources import balanced_sample, list_source_items, resolve_source

SUMMARY_KEYS = (
    "n",
    "n_total",
    "n_scored",
    "n_labeled",
    "n_failed",
    "acc_multiclass",
    "macro_f1",
    "per_class",
    "cm_multiclass",
    "threshold",
    "acc_binary",
    "sensitivity",
    "specificity",
    "cm_binary",
    "roc_auc_binary",
    "ap_binary",
    "best_threshold_by_YoudenJ",
    "best_J",
    "ece",
    "model_version",
    "tta",
    "class_names",
)


def collect_items(ctx: JobContext) -> list[EvalItem]:
    """Items named by the job's params, each re-checked against the allow-list here too."""
    settings = ctx.settings
    params = ctx.params
    items: list[EvalItem] = []
    for entry in params.get("paths") or []:
        items += list_source_items(resolve_source(entry, settings), settings, recursive=False)
    if params.get("source"):
        items += list_source_items(
            resolve_source(params["source"], settings),
            settings,
            recursive=bool(params.get("recursive", True)),
        )
    if not items:
        raise DatasetError("no images found in the requested source")
    limit = int(params.get("limit") or 0)
    items = balanced_sample(items, limit, seed=int(params.get("seed", 0))) if limit else items
    if len(items) > settings.max_eval_images:
        raise DatasetError(
            f"{len(items)} images exceed BRAINMRI_MAX_EVAL_IMAGES="
            f"{settings.max_eval_images}; pass a limit"
        )
    return items


def run_evaluate(ctx: JobContext, engine: InferenceEngine) -> JobOutcome:
    items = collect_items(ctx)
    threshold = resolve_threshold(
        ctx.params.get("threshold"), ctx.settings.tumor_thresh, engine.metadata
    )
    tta = bool(ctx.params.get("tta", False))
    ctx.progress(0.0, {"n_images": len(items)})
    with tempfile.TemporaryDirectory(prefix="brainmri-eval-") as tmp:
        outcome = evaluate(
            engine,
            items,
            Path(tmp),
            threshold=threshold,
            tta=tta,
            on_progress=lambda done, total: ctx.progress(
                0.95 * done / total, {"done": done, "total": total}
            ),
        )
        artifacts = ctx.put_artifact_files(outcome.artifacts)
    report = outcome.report
    result = {key: report.get(key) for key in SUMMARY_KEYS}
    result["artifacts"] = {name: artifact_url(ctx.job_id, name) for name in artifacts}
    result["errors"] = [{"path": item.name, "code": error.code} for item, error in outcome.errors][
        :100
    ]
    rows = [
        {
            "item_index": index,
            "input_uri": item.name,
            "sha256": None,
            "class_probs": pred.class_probs,
            "predicted_class": pred.predicted_class,
            "tumor_prob": pred.tumor_prob,
            "threshold": threshold,
            "has_tumor": pred.has_tumor(threshold),
            "true_class": item.true_class,
            "cam_uri": None,
            "model_version": engine.version,
        }
        for index, (item, pred) in enumerate(outcome.predictions)
    ]
    # Prediction time only: the plots and CSVs an evaluation draws are not inference.
    per_image_ms = 1000.0 * outcome.prediction_seconds / max(1, report["n_scored"])
    return JobOutcome(
        result=result,
        model_version=engine.version,
        predictions=rows,
        artifacts=artifacts,
        inference_ms_per_image=per_image_ms,
    )
