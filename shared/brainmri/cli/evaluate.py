"""``brainmri eval``: evaluation report with plots for a folder or CSV of labelled images."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainmri.cli.common import EPILOG, count, fail, optional_resample_count, unit_interval
from brainmri.config import DEVICES, INFERENCE_BACKENDS, get_settings
from brainmri.framing import CROP_MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on labelled images (report + plots)",
        description="DATA is a folder of class-named subfolders or a CSV manifest. Writes "
        "predictions.csv, eval_report.json, errors.csv (when some inputs failed), plots and "
        "mistakes.png (the worst mistakes, when there are any) to OUT, replacing those files "
        "from an earlier run. Exits 1 when no image could be "
        "scored.",
        epilog=EPILOG,
    )
    parser.add_argument("--data", type=Path, required=True, metavar="DIR_or_CSV")
    parser.add_argument("--model", type=Path, default=None, metavar="BUNDLE")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument(
        "--threshold",
        type=unit_interval,
        default=None,
        help="operating threshold from 0 to 1 (default: TUMOR_THRESH, else the bundle's)",
    )
    parser.add_argument(
        "--bootstrap",
        type=optional_resample_count,
        default=0,
        metavar="N",
        help="add 95%% bootstrap confidence intervals from N resamples (>= 100; 0: none)",
    )
    parser.add_argument(
        "--bootstrap-by",
        "--bootstrap_by",
        choices=("group", "image"),
        default="group",
        help="resample whole near-duplicate groups (default; needs a manifest with group_id, "
        "else images are resampled) or single images",
    )
    parser.add_argument(
        "--mistakes",
        type=count,
        default=16,
        metavar="N",
        help="show the N worst mistakes in mistakes.png: missed tumours first (0: none)",
    )
    parser.add_argument(
        "--crop",
        choices=CROP_MODES,
        default=None,
        help="frame every slice this way instead of as the bundle says (head: cropped to the "
        "head box; none: the whole slice): a probe of how much the data's framing carries",
    )
    parser.add_argument("--backend", choices=INFERENCE_BACKENDS, default=None)
    parser.add_argument("--device", choices=DEVICES, default=None)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from brainmri.data.manifest import load_samples
    from brainmri.evaluation.report import ERRORS_FILE, evaluate, items_from_samples
    from brainmri.inference.loader import engine_for_bundle
    from brainmri.inference.results import resolve_threshold
    from brainmri.models.bundle import load_bundle

    settings = get_settings()
    bundle = load_bundle(args.model or settings.resolved_model_dir)
    if args.crop is not None:
        bundle.metadata = bundle.metadata.model_copy(
            update={"preprocess": bundle.metadata.preprocess.model_copy(update={"crop": args.crop})}
        )
    engine = engine_for_bundle(settings, bundle, backend=args.backend, device=args.device)
    threshold = resolve_threshold(args.threshold, settings.tumor_thresh, engine.metadata)
    items = items_from_samples(load_samples(args.data))
    outcome = evaluate(
        engine,
        items,
        args.out,
        threshold=threshold,
        tta=args.tta,
        progress=True,
        bootstrap=args.bootstrap,
        bootstrap_by=args.bootstrap_by,
        mistakes=args.mistakes,
    )
    r = outcome.report
    if r["n_scored"] == 0:
        # Every input failed: there are no metrics, and a script must not read success.
        return fail(
            f"no image could be scored ({r['n_failed']} of {r['n_total']} unreadable; "
            f"see {args.out / ERRORS_FILE})",
            code=1,
        )

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    print(
        f"model {r['model_version']} on {r['n_labeled']} labelled images "
        f"({r['n_failed']} unreadable){' with TTA' if args.tta else ''}"
        f"{', slices cropped to the head' if r['crop'] == 'head' else ''}"
    )
    print(
        f"accuracy {fmt(r['acc_multiclass'])}  macro-F1 {fmt(r['macro_f1'])}  ECE {fmt(r['ece'])}"
    )
    print(f"tumor vs no tumor: ROC AUC {fmt(r['roc_auc_binary'])}  AP {fmt(r['ap_binary'])}")
    print(
        f"at threshold {r['threshold']:.2f}: sensitivity {fmt(r['sensitivity'])}  "
        f"specificity {fmt(r['specificity'])}  binary accuracy {fmt(r['acc_binary'])}"
    )
    if r["best_threshold_by_YoudenJ"] is not None:
        print(
            f"suggested threshold (Youden J): {r['best_threshold_by_YoudenJ']:.2f} "
            f"(J = {r['best_J']:.4f})"
        )
    if "confidence_intervals" in r:
        ci = r["confidence_intervals"]
        low, high = ci["macro_f1"]
        print(f"macro-F1 95% interval {low:.4f} - {high:.4f} ({ci['method']})")
    print(f"artifacts in {args.out}: {', '.join(r['artifacts'])}")
    return 0
