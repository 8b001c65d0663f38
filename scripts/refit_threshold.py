#!/usr/bin/env python3
"""Re-fit a bundle's default threshold on an evaluation of labelled validation slices.

Research/triage only - not a medical device.

Why: the trainer fits the threshold on the calibration half of validation only. A sensitivity
target of 0.995 cannot be resolved on a half with ~300 tumours (one miss is 0.33%), so two
confident misses there forced a threshold of 0.01 and a specificity of 0.72 on one model. The
same policy on the whole validation split (~600 tumours) is what this script applies, to the
predictions that ``brainmri eval`` wrote for the bundle itself (so float16 weights are judged
as shipped). It changes only the threshold fields of ``metadata.json``; the weights, and so
their sha256, stay as they are::

    brainmri eval --data runs/split-v2-seed42/val.csv --model BUNDLE --out runs/val --backend eager
    python scripts/refit_threshold.py BUNDLE runs/val --policy sensitivity:0.995

Never point it at a test split: the threshold would then be chosen on the data that scores it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from brainmri.evaluation.calibration import choose_threshold
from brainmri.models.bundle import load_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="bundle folder whose metadata.json is updated")
    parser.add_argument("eval_dir", type=Path, help="`brainmri eval --out` folder of the bundle")
    parser.add_argument("--policy", default="sensitivity:0.995", help="youden or sensitivity:X")
    args = parser.parse_args(argv)

    bundle = load_bundle(args.bundle)  # verifies the weights before anything is written
    report = json.loads((args.eval_dir / "eval_report.json").read_text())
    if report.get("model_version") != bundle.version:
        raise SystemExit(
            f"error: {args.eval_dir} scored {report.get('model_version')}, not {bundle.version}"
        )
    with (args.eval_dir / "predictions.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("true_class")]
    if not rows:
        raise SystemExit(f"error: {args.eval_dir} holds no labelled predictions")
    is_tumor = np.array([row["true_class"] != "no_tumor" for row in rows], dtype=int)
    tumor_prob = np.array([float(row["tumor_prob"]) for row in rows])
    choice = choose_threshold(is_tumor, tumor_prob, args.policy)

    source = f"{choice.policy} on {len(rows)} validation slices ({args.eval_dir.name})"
    path = args.bundle / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata["default_threshold"] = choice.threshold
    metadata["threshold_source"] = source
    metadata.setdefault("metrics", {})["threshold_refit"] = {
        "n": len(rows),
        "n_tumor": int(is_tumor.sum()),
        "policy": choice.policy,
        "threshold": choice.threshold,
        "uncapped_threshold": choice.uncapped,
        "sensitivity_at_threshold": choice.sensitivity,
        "specificity_at_threshold": choice.specificity,
        "replaced_threshold": bundle.metadata.default_threshold,
    }
    path.write_text(json.dumps(metadata, indent=2) + "\n")
    load_bundle(args.bundle)  # still loads and verifies
    print(
        f"threshold {bundle.metadata.default_threshold:g} -> {choice.threshold:g} ({source}): "
        f"sensitivity {choice.sensitivity:.4f}, specificity {choice.specificity:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
