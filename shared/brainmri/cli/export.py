"""``brainmri export onnx``: export a bundle and check it against fp32 eager PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainmri.cli.common import EPILOG, print_json
from brainmri.config import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model bundle to another runtime", epilog=EPILOG
    )
    commands = parser.add_subparsers(dest="export_command", required=True)
    onnx = commands.add_parser(
        "onnx", help="export to ONNX and report agreement with fp32", epilog=EPILOG
    )
    onnx.add_argument("--model", type=Path, default=None, metavar="DIR")
    onnx.add_argument("--out", type=Path, required=True, metavar="FILE.onnx")
    onnx.add_argument(
        "--check",
        type=int,
        default=32,
        metavar="N",
        help="compare fp32 and ONNX probabilities on N phantom slices (0: skip)",
    )
    onnx.set_defaults(handler=run_onnx)


def run_onnx(args: argparse.Namespace) -> int:
    import torch

    from brainmri.inference.agreement import compare_probabilities
    from brainmri.inference.backends import EagerBackend, OnnxBackend
    from brainmri.inference.onnx_export import export_onnx
    from brainmri.models.bundle import load_bundle
    from brainmri.phantom import generate_phantom
    from brainmri.preprocess import preprocess_slice

    bundle = load_bundle(args.model or get_settings().resolved_model_dir)
    path = export_onnx(bundle, args.out)
    result: dict[str, object] = {"model_version": bundle.version, "onnx": str(path)}
    if args.check:
        classes = ["no_tumor", "glioma", "meningioma", "pituitary"]
        batch = torch.stack(
            [
                preprocess_slice(
                    generate_phantom(classes[i % 4], seed=i, size=256) / 255.0,
                    bundle.metadata.preprocess,
                )
                for i in range(args.check)
            ]
        )
        temperature = bundle.metadata.temperature
        reference = torch.softmax(
            EagerBackend(bundle.build_model(), torch.device("cpu")).logits(batch) / temperature, -1
        )
        candidate = torch.softmax(OnnxBackend(path).logits(batch) / temperature, -1)
        result["agreement_vs_fp32"] = compare_probabilities(
            reference.numpy(), candidate.numpy()
        ).as_dict()
    print_json(result)
    return 0
