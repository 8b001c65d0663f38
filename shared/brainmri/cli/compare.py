"""``brainmri compare``: is model B better than model A on the same labelled images?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from brainmri.cli.common import EPILOG, resample_count

METRIC_LABELS = {
    "macro_f1": "macro-F1",
    "acc_multiclass": "accuracy",
    "roc_auc_binary": "ROC AUC",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="paired bootstrap of two `brainmri eval` runs on the same images",
        description="RUN_A and RUN_B are `brainmri eval --out` folders for two models scored on "
        "the same data. Prints B - A for each headline metric with a 95%% paired-bootstrap "
        "interval (whole near-duplicate groups when the data was a builder manifest), and "
        "whether the difference is clear of noise. Each model is judged at its own threshold.",
        epilog=EPILOG,
    )
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="eval folder of the baseline")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="eval folder of the candidate")
    parser.add_argument(
        "--bootstrap", type=resample_count, default=2000, metavar="N", help="resamples (>= 100)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bootstrap-by",
        "--bootstrap_by",
        choices=("group", "image"),
        default="group",
        help="resample whole near-duplicate groups (default, when every row has one) or images",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from brainmri.evaluation.compare import compare_runs, load_eval_run, verdict
    from brainmri.jsonutil import jsonable
    from brainmri.progress import progress_bar

    run_a, run_b = load_eval_run(args.run_a), load_eval_run(args.run_b)
    with progress_bar(
        total=args.bootstrap, desc="paired bootstrap", unit="resample", leave=False
    ) as bar:
        result = compare_runs(
            run_a,
            run_b,
            n_boot=args.bootstrap,
            seed=args.seed,
            bootstrap_by=args.bootstrap_by,
            on_progress=lambda done, _: bar.update(done - bar.n),
        )
    a, b, boot = result["a"], result["b"], result["bootstrap"]
    print(f"A: {a['model_version']} (threshold {a['threshold']:.2f})")
    print(f"B: {b['model_version']} (threshold {b['threshold']:.2f})")
    print(
        f"{result['n']} images; {boot['resamples']} paired resamples of {boot['units']} "
        f"{'near-duplicate groups' if boot['unit'] == 'group' else 'images'}"
    )
    print(f"{'metric':<12} {'A':>8} {'B':>8} {'B - A':>8}  {'95% interval':>19}  P(B>A)  verdict")
    for key, label in METRIC_LABELS.items():
        if key not in result["metrics"]:
            continue
        m = result["metrics"][key]
        low, high = m["ci"]
        print(
            f"{label:<12} {m['a']:>8.4f} {m['b']:>8.4f} {m['diff']:>+8.4f}  "
            f"{low:>+8.4f} .. {high:>+8.4f}  {m['p_b_better']:>6.3f}  {verdict(m)}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(jsonable(result), indent=2) + "\n")
        print(f"written to {args.out}")
    return 0
