"""``brainmri predict``: score local files and print JSON."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brainmri import DISCLAIMER
from brainmri.cli.common import EPILOG, add_flag, fail, print_json, unit_interval
from brainmri.config import DEVICES, INFERENCE_BACKENDS, get_settings
from brainmri.errors import InputError

#: Error code of a prediction whose Grad-CAM could not be written: the input was fine.
CAM_WRITE_FAILED = "cam_write_failed"


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
        default=None,
        metavar="OUT.png|DIR/",
        help="write the Grad-CAM overlay to this file; to DIR/<stem>_cam.png when it is an "
        "existing folder, ends with '/' or several FILEs are given (the folder is created; "
        "inputs sharing a stem get their position added: <stem>_<n>_cam.png)",
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
        type=unit_interval,
        default=None,
        help="operating threshold from 0 to 1 (default: TUMOR_THRESH, else the bundle's)",
    )
    parser.add_argument("--backend", choices=INFERENCE_BACKENDS, default=None)
    parser.add_argument("--device", choices=DEVICES, default=None)
    add_flag(
        parser,
        "dicom_slices",
        choices=("center", "middle_k"),
        default=None,
        help="DICOM series: centre slice (default) or the middle K averaged",
    )
    parser.add_argument("--k", type=int, default=None, help="K for --dicom-slices middle_k")
    parser.set_defaults(handler=run)


def cam_is_folder(cam: str, n_files: int) -> bool:
    """A folder when the user says so (trailing separator), it already is one, or there are
    several inputs. argparse's Path would drop the trailing ``/``, so ``cam`` is the raw text."""
    return n_files > 1 or cam.endswith(("/", os.sep)) or Path(cam).is_dir()


def cam_file_names(files: Sequence[Path]) -> list[str]:
    """One distinct ``<stem>_cam.png`` per input. ``a/scan.png`` and ``b/scan.png`` would
    overwrite each other, so a shared stem gets the input's 1-based position; any remaining
    clash (``scan_1.png`` beside two ``scan`` inputs, names differing only in case on a
    case-insensitive disk) gets a counter."""
    stems = Counter(path.stem.casefold() for path in files)
    used: set[str] = set()
    names = []
    for position, path in enumerate(files, start=1):
        base = path.stem if stems[path.stem.casefold()] == 1 else f"{path.stem}_{position}"
        name, counter = f"{base}_cam.png", 2
        while name.casefold() in used:
            name, counter = f"{base}_{counter}_cam.png", counter + 1
        used.add(name.casefold())
        names.append(name)
    return names


def cam_targets(cam: str, files: Sequence[Path]) -> list[Path]:
    """Where each input's CAM goes; creates the folder (or the file's parent) up front, so
    a bad ``--cam`` is one clear error before any model is loaded."""
    if cam_is_folder(cam, len(files)):
        folder = Path(cam)
        folder.mkdir(parents=True, exist_ok=True)
        return [folder / name for name in cam_file_names(files)]
    target = Path(cam)
    target.parent.mkdir(parents=True, exist_ok=True)
    return [target]


def run(args: argparse.Namespace) -> int:
    from brainmri.inference.loader import engine_from_settings
    from brainmri.inference.results import resolve_threshold

    targets: list[Path] = []
    if args.cam:
        try:
            targets = cam_targets(args.cam, args.files)
        except OSError as exc:
            return fail(f"--cam {args.cam}: cannot create the folder ({exc.strerror or exc})")
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
    outputs: list[dict[str, Any]] = []
    failed = False
    from brainmri.progress import progress_bar

    for index, path in enumerate(
        progress_bar(args.files, desc="predict", unit="file", disable=not several)
    ):
        entry: dict[str, Any] = {"file": str(path)}
        try:
            prepared = engine.prepare_source(path)
            prediction = engine.predict_prepared([prepared], tta=args.tta)[0]
            entry.update(prediction.to_dict(threshold))
            entry["input"] = {"kind": prepared.decoded.kind, **prepared.decoded.details}
            cam_png = (  # explains the reported class, whatever the TTA views decided
                engine.explain(prepared, target_class=prediction.predicted_class).png
                if targets
                else None
            )
        except (InputError, OSError) as exc:
            failed = True
            entry["error"] = {"code": getattr(exc, "code", "unreadable_file"), "message": str(exc)}
            cam_png = None
        if cam_png is not None:
            target = targets[index]
            try:
                target.write_bytes(cam_png)
                entry["cam_path"] = str(target)
            except OSError as exc:
                # The prediction stands; only the overlay is missing, and the input is not
                # to blame.
                failed = True
                message = f"could not write the Grad-CAM to {target}: {exc.strerror or exc}"
                entry["cam_error"] = {"code": CAM_WRITE_FAILED, "message": message}
                print(f"error [{CAM_WRITE_FAILED}]: {message}", file=sys.stderr)
        entry["disclaimer"] = DISCLAIMER
        outputs.append(entry)
    print_json(outputs if several else outputs[0])
    return 1 if failed else 0
