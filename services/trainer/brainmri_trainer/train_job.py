"""The train job: dataset source -> split -> train -> held-out evaluation -> registry.

Stages report into the job's progress detail. Nothing is registered until the candidate has
been trained *and* evaluated; a cancel (checked between batches) or a failure before that
leaves no model version and no bundle objects behind.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from brainmri.config import Settings
from brainmri.data.builder import build_dataset_from_items
from brainmri.data.manifest import read_manifest
from brainmri.data.materialize import fingerprint, list_dataset, materialize
from brainmri.db.models import ModelStage
from brainmri.db.session import session_scope
from brainmri.errors import BrainMRIError
from brainmri.evaluation.compare import compare_runs, load_eval_run
from brainmri.evaluation.report import evaluate, items_from_samples
from brainmri.inference.loader import engine_for_bundle
from brainmri.jobs.artifacts import artifact_url
from brainmri.jobs.decoding import job_decode_sandbox
from brainmri.jobs.runtime import JobCancelled, JobContext, JobOutcome
from brainmri.models.bundle import load_bundle
from brainmri.registry.cache import ProductionModel
from brainmri.registry.gate import promotion_gate
from brainmri.registry.versions import (
    ProductionChangedError,
    bundle_prefix,
    promote,
    register_bundle,
    version_trained_by,
)
from brainmri.sources import resolve_source
from brainmri.training.recipes import make_config, train_options
from brainmri.training.trainer import EpochReport, Trainer, TrainHooks, TrainingCancelled

log = logging.getLogger(__name__)

METRIC_KEYS = (
    "n",
    "acc_multiclass",
    "macro_f1",
    "sensitivity",
    "specificity",
    "roc_auc_binary",
    "ap_binary",
    "ece",
    "threshold",
    "best_threshold_by_YoudenJ",
)
# Paired resamples behind the promotion gate's interval (both models, ~10 ms each on a CPU).
PAIRED_RESAMPLES = 1000


def loop_budget_minutes(settings: Settings, requested: float | None, elapsed_s: float) -> float:
    """Wall-clock minutes the epoch loop may take: what the request asked for, never more than
    what is left of the job's share of its hard time limit once the data is in.

    Without this a run too long for the limit is killed by it mid-epoch, at a high learning
    rate, and the job fails with nothing registered; with it the trainer fits its schedule to
    the time there is and still ends annealed, evaluated and registered.
    """
    left = settings.train_budget_ceiling_minutes - elapsed_s / 60.0
    if left <= 0:
        raise BrainMRIError(
            f"preparing the data took {elapsed_s / 60.0:.1f} min, the whole share of the train "
            f"time limit the epoch loop may use ({settings.train_budget_ceiling_minutes:g} min); "
            "raise BRAINMRI_TRAIN_TIME_LIMIT or BRAINMRI_TRAIN_BUDGET_SHARE",
            code="time_limit_exceeded",
        )
    return min(requested, left) if requested else left


def run_train(ctx: JobContext) -> JobOutcome:
    recovered = _outcome_of_earlier_attempt(ctx)
    if recovered is not None:
        return recovered
    settings = ctx.settings
    params = ctx.params
    started = time.monotonic()
    options = train_options(params)
    source = resolve_source(params["dataset"], settings)
    sandbox = job_decode_sandbox(settings)  # every decode below reads files users sent
    with tempfile.TemporaryDirectory(prefix="brainmri-train-") as tmp:
        work = Path(tmp)
        ctx.progress(0.0, {"stage": "listing dataset"})
        files = list_dataset(source, settings)
        source_fingerprint = fingerprint(files)
        items = materialize(
            files,
            work / "data",
            on_progress=lambda done, total: ctx.progress(
                0.05 * done / total, {"stage": "downloading", "done": done, "total": total}
            ),
        )
        ctx.progress(0.05, {"stage": "splitting"})
        summary = build_dataset_from_items(
            items,
            work / "split",
            val_frac=params.get("val_frac", 0.15),
            test_frac=params.get("test_frac", 0.15),
            seed=options["seed"],
            workers=settings.decode_workers,
            progress=False,
            sandbox=sandbox,
        )
        budget = loop_budget_minutes(
            settings, params.get("time_budget_minutes"), time.monotonic() - started
        )
        config = make_config(
            params.get("recipe", "simple"),
            **options,
            device=settings.device,
            decode_workers=settings.decode_workers,
            time_budget_minutes=budget,
        )
        hooks = TrainHooks(
            on_epoch=lambda report: _epoch_progress(ctx, report),
            should_stop=lambda: ctx.cancel_requested,
        )
        trainer = Trainer(
            config,
            read_manifest(work / "split" / "train.csv"),
            read_manifest(work / "split" / "val.csv"),
            work / "run",
            hooks=hooks,
            progress=False,
            command=f"train job {ctx.job_id}",
            name=settings.model_name,
            decode_sandbox=sandbox,
        )
        try:
            result = trainer.run()
        except TrainingCancelled as exc:
            raise JobCancelled(str(exc)) from exc
        ctx.progress(0.87, {"stage": "evaluating on the held-out split"})
        test_items = items_from_samples(read_manifest(work / "split" / "test.csv"))
        candidate = engine_for_bundle(settings, load_bundle(result.bundle_dir), sandbox=sandbox)
        candidate_report = evaluate(
            candidate,
            test_items,
            work / "eval-candidate",
            threshold=candidate.metadata.default_threshold,
        ).report
        production_engine = ProductionModel(settings, sandbox=sandbox).engine()
        production_report = evaluate(
            production_engine,
            test_items,
            work / "eval-production",
            threshold=production_engine.metadata.default_threshold,
            plots_enabled=False,
        ).report
        ctx.check_cancelled()
        paired = compare_runs(
            load_eval_run(work / "eval-production"),
            load_eval_run(work / "eval-candidate"),
            n_boot=PAIRED_RESAMPLES,
        )
        decision = promotion_gate(
            candidate_report,
            production_report,
            min_macro_f1_gain=settings.promotion_min_macro_f1_gain,
            max_sensitivity_drop=settings.promotion_max_sensitivity_drop,
            paired_macro_f1=paired["metrics"].get("macro_f1"),
            require_clear_gain=settings.promotion_require_clear_gain,
        )
        ctx.progress(0.95, {"stage": "registering"})
        artifacts = ctx.put_artifact_files(
            [path for path in (work / "eval-candidate").iterdir() if path.is_file()]
            + [
                work / "run" / name
                for name in ("training_curves.png", "history.csv", "calibration.json")
                if (work / "run" / name).exists()
            ]
        )
        metrics = {
            "test": {key: candidate_report.get(key) for key in METRIC_KEYS},
            "production_on_same_test": {key: production_report.get(key) for key in METRIC_KEYS},
            "production_version": production_engine.version,
            "paired_vs_production": {
                "bootstrap": paired["bootstrap"],
                "metrics": paired["metrics"],
            },
            "calibration": result.calibration,
            "best_epoch": result.best_epoch,
            "val_macro_f1": result.best_macro_f1,
            "gate": decision.reason,
        }
        registration = _register(
            ctx,
            result.bundle_dir,
            metrics,
            source_fingerprint,
            decision,
            auto_promote=bool(params.get("auto_promote", True)),
        )
    version = candidate.version
    promoted = registration.promoted
    return JobOutcome(
        result={
            "model_version": version,
            "stage": ModelStage.PRODUCTION.value if promoted else ModelStage.CANDIDATE.value,
            "promoted": promoted,
            "gate": decision.reason,
            "stage_reason": registration.stage_reason,
            "test_metrics": metrics["test"],
            "production_metrics": metrics["production_on_same_test"],
            "production_version": production_engine.version,
            "epochs_requested": config.epochs,
            "epochs_run": result.epochs_run,
            "time_budget_minutes": round(budget, 3),
            "best_epoch": result.best_epoch,
            "training_seconds": round(result.seconds, 1),
            "source_fingerprint": source_fingerprint,
            "split": summary.counts,
            "duplicates_dropped": summary.exact_duplicates_dropped,
            "artifacts": {name: artifact_url(ctx.job_id, name) for name in artifacts},
        },
        model_version=version,
        artifacts=artifacts,
    )


def _gate_promoter(job_id: str) -> str:
    """The registry's ``promoted_by`` of a version the gate of train job ``job_id`` promoted."""
    return f"gate (job {job_id})"


def _outcome_of_earlier_attempt(ctx: JobContext) -> JobOutcome | None:
    """The result of an earlier attempt that registered its model but could not record it.

    Registration commits before the job's success does; a database outage or a kill in
    between sends the job back to the queue. Training again would take hours and register a
    second version of the same request, so the job ends with the version it already made.
    Its evaluation files went with the earlier attempt's folder and are not listed.
    """
    with session_scope(ctx.settings.resolved_database_url) as session:
        row = version_trained_by(session, ctx.job_id)
        if row is None:
            return None
        metrics = row.metrics or {}
        result: dict[str, Any] = {
            "model_version": row.version,
            "stage": row.stage,
            # What the gate did then; a later manual promotion or rollback is the registry's.
            "promoted": row.promoted_by == _gate_promoter(ctx.job_id),
            "gate": metrics.get("gate", row.stage_reason),
            "stage_reason": row.stage_reason,
            "test_metrics": metrics.get("test"),
            "production_metrics": metrics.get("production_on_same_test"),
            "production_version": metrics.get("production_version"),
            "best_epoch": metrics.get("best_epoch"),
            "source_fingerprint": row.data_fingerprint,
            "recovered": "registered by an earlier attempt whose result was not recorded; "
            "not trained again",
            "artifacts": {},
        }
    log.warning("train job already registered %s; recording that instead of training", row.version)
    return JobOutcome(result=result, model_version=result["model_version"])


def _epoch_progress(ctx: JobContext, report: EpochReport) -> None:
    ctx.progress(
        0.05 + 0.8 * report.epoch / report.epochs,
        {
            "stage": "training",
            "epoch": report.epoch,
            "epochs": report.epochs,
            "train_loss": round(report.train_loss, 5),
            "val_loss": round(report.val_loss, 5),
            "val_acc": report.val_acc,
            "val_macro_f1": report.val_macro_f1,
            "val_auc": report.val_auc,
            "seconds": round(report.seconds, 1),
        },
    )


class Registration(NamedTuple):
    promoted: bool
    stage_reason: str


def _register(
    ctx: JobContext,
    bundle_dir: Path,
    metrics: dict[str, Any],
    source_fingerprint: str,
    decision: Any,
    *,
    auto_promote: bool,
) -> Registration:
    """Upload + record the candidate in one step; on any failure remove what was uploaded.

    The gate compared the candidate with ``metrics["production_version"]``, read before the
    evaluation; a train job runs for hours, and an admin may promote or roll back meanwhile.
    The promotion is therefore a compare-and-swap against that version: if production is
    another one now, the gate's verdict says nothing about it, so the model stays a candidate
    (the job still succeeds) with a reason saying so, instead of silently replacing it.

    All of it happens only while this attempt still owns the job: a worker presumed dead whose
    job was handed to another must not put its model into production, since its result will
    be discarded (the job row is locked until the registration commits).
    """
    settings = ctx.settings
    promote_now = auto_promote and decision.promote
    metadata = load_bundle(bundle_dir).metadata
    try:
        with session_scope(settings.resolved_database_url) as session:
            ctx.hold_ownership(session)  # a job another worker took over registers nothing
            row = register_bundle(
                session,
                ctx.store,
                bundle_dir,
                name=settings.model_name,
                training_job_id=ctx.job_id,
                metrics=metrics,
                reason=f"gate: {decision.reason}",
            )
            row.data_fingerprint = source_fingerprint
            if promote_now:
                compared = metrics.get("production_version")
                try:
                    promote(
                        session,
                        version=row.version,
                        by=_gate_promoter(ctx.job_id),
                        reason=decision.reason,
                        expected_production=compared,
                    )
                except ProductionChangedError as exc:
                    promote_now = False
                    row.stage_reason = (
                        f"production changed from {exc.expected} to {exc.actual or 'none'} "
                        "during training; not promoted - compare again or promote by hand "
                        f"(gate vs {exc.expected}: {decision.reason})"
                    )
            elif not auto_promote:
                row.stage_reason = f"auto-promotion off; gate would say: {decision.reason}"
            stage_reason = row.stage_reason or ""
    except BaseException:
        ctx.store.delete_prefix(bundle_prefix(settings.model_name, metadata.version))
        raise
    log.info(
        "registered %s as %s: %s",
        metadata.version,
        "production" if promote_now else "candidate",
        stage_reason,
    )
    return Registration(promote_now, stage_reason)
