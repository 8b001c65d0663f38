"""``brainmri predict``: score local files and print JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from brainmri import DISCLAIMER
from brainmri.cli.common import EPILOG, add_flag, print_json
from brainmri.config import get_settings
from brainmri.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify local images, DICOM files or zipped DICOM series",
        description="Prints JSON with class_probs, predicted_class, tumor_prob, threshold, "
        "has_tumor and model_version for each FILE.",
        epilog=EPILOG,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--tta", action="store_true", help="average the bundle's TTA views")
    parser.add_argument(
        "--cam",
        type=Path,
        default=None,
        metavar="OUT.png",
        help="write the Grad-CAM overlay here (a folder when several FILEs)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="DIR",
        help="model bundle folder (default: BRAINMRI_MODEL_DIR or shipped)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="operating threshold (default: TUMOR_THRESH, else the bundle's)",
    )
    parser.add_argument("--backend", choices=("auto", "eager", "bf16", "onnx"), default=None)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default=None)
    add_flag(
        parser,
        "dicom_slices",
        choices=("center", "middle_k"),
        default=None,
        help="DICOM series: centre slice (default) or the middle K averaged",
    )
    parser.add_argument("--k", type=int, default=None, help="K for --dicom-slices middle_k")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from brainmri.inference.loader import engine_from_settings
    from brainmri.inference.results import resolve_threshold

    settings = get_settings()
    overrides = {}
    if args.dicom_slices:
        overrides["dicom_slice_mode"] = args.dicom_slices
    if args.k:
        overrides["dicom_middle_k"] = args.k
    if overrides:
        settings = settings.model_copy(update=overrides)
    engine = engine_from_settings(
        settings, model_dir=args.model, backend=args.backend, device=args.device
    )
    threshold = resolve_threshold(args.threshold, settings.tumor_thresh, engine.metadata)
    several = len(args.files) > 1
    if args.cam and several:
        args.cam.mkdir(parents=True, exist_ok=True)
    outputs: list[dict[str, Any]] = []
    failed = False
    from brainmri.progress import progress_bar

    for path in progress_bar(args.files, desc="predict", unit="file", disable=not several):
        entry: dict[str, Any] = {"file": str(path)}
        try:
            prepared = engine.prepare_source(path)
            prediction = engine.predict_prepared([prepared], tta=args.tta)[0]
            entry.update(prediction.to_dict(threshold))
            entry["input"] = {"kind": prepared.decoded.kind, **prepared.decoded.details}
            if args.cam:
                target = args.cam / f"{path.stem}_cam.png" if several else args.cam
                target.write_bytes(engine.explain(prepared).png)
                entry["cam_path"] = str(target)
        except (InputError, OSError) as exc:
            failed = True
            entry["error"] = {"code": getattr(exc, "code", "unreadable_file"), "message": str(exc)}
        entry["disclaimer"] = DISCLAIMER
        outputs.append(entry)
    print_json(outputs if several else outputs[0])
    return 1 if failed else 0
