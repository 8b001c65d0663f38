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
    _add_common_flags(onnx, out_metavar="FILE.onnx", runtime="ONNX")
    onnx.set_defaults(handler=run_onnx)
    half = commands.add_parser(
        "fp16",
        epilog=EPILOG,
        help="copy a bundle with float16 weights (half the size) and report agreement with fp32",
    )
    _add_common_flags(half, out_metavar="DIR", runtime="float16")
    half.set_defaults(handler=run_fp16)


def _add_common_flags(parser: argparse.ArgumentParser, *, out_metavar: str, runtime: str) -> None:
    """The flags every export shares: source bundle, destination, agreement check."""
    parser.add_argument("--model", type=Path, default=None, metavar="DIR")
    parser.add_argument("--out", type=Path, required=True, metavar=out_metavar)
    parser.add_argument(
        "--check",
        type=int,
        default=32,
        metavar="N",
        help=f"compare fp32 and {runtime} probabilities on N slices (0: skip)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR_or_CSV",
        help="check on these labelled images instead of phantom slices",
    )


def _check_batch(bundle, count: int, data: Path | None):
    """Preprocessed inputs to compare runtimes on: files from ``data``, else phantom slices."""
    import torch

    from brainmri.imaging.decode import decode_image
    from brainmri.phantom import generate_phantom
    from brainmri.preprocess import preprocess_slice

    config = bundle.metadata.preprocess
    if data is not None:
        from brainmri.data.manifest import load_samples

        samples = load_samples(data)[:count]
        slices = [decode_image(sample.path.read_bytes()).pixels for sample in samples]
    else:
        classes = ["no_tumor", "glioma", "meningioma", "pituitary"]
        slices = [generate_phantom(classes[i % 4], seed=i, size=256) / 255.0 for i in range(count)]
    return torch.stack([preprocess_slice(pixels, config) for pixels in slices])


def _probabilities(backend, batch, temperature: float):
    import torch

    chunks = [backend.logits(batch[i : i + 32]) for i in range(0, len(batch), 32)]
    return torch.softmax(torch.cat(chunks) / temperature, -1).numpy()


def run_onnx(args: argparse.Namespace) -> int:
    import torch

    from brainmri.inference.agreement import compare_probabilities
    from brainmri.inference.backends import EagerBackend, OnnxBackend
    from brainmri.inference.onnx_export import export_onnx
    from brainmri.models.bundle import load_bundle

    bundle = load_bundle(args.model or get_settings().resolved_model_dir)
    path = export_onnx(bundle, args.out)
    result: dict[str, object] = {"model_version": bundle.version, "onnx": str(path)}
    if args.check:
        batch = _check_batch(bundle, args.check, args.data)
        temperature = bundle.metadata.temperature
        reference = _probabilities(
            EagerBackend(bundle.build_model(), torch.device("cpu")), batch, temperature
        )
        candidate = _probabilities(OnnxBackend(path), batch, temperature)
        result["agreement_vs_fp32"] = compare_probabilities(reference, candidate).as_dict()
    print_json(result)
    return 0


def run_fp16(args: argparse.Namespace) -> int:
    import torch

    from brainmri.inference.agreement import compare_probabilities
    from brainmri.inference.backends import EagerBackend
    from brainmri.models.bundle import load_bundle

    source = load_bundle(args.model or get_settings().resolved_model_dir)
    copy = load_bundle(source.directory)  # type: ignore[arg-type]
    copy.metadata = copy.metadata.model_copy(update={"version": ""})
    copy.save(args.out, dtype="float16")
    half = load_bundle(args.out)
    result: dict[str, object] = {
        "source_version": source.version,
        "version": half.version,
        "bundle": str(args.out),
    }
    if args.check:
        batch = _check_batch(source, args.check, args.data)
        temperature = source.metadata.temperature
        cpu = torch.device("cpu")
        reference = _probabilities(EagerBackend(source.build_model(), cpu), batch, temperature)
        candidate = _probabilities(EagerBackend(half.build_model(), cpu), batch, temperature)
        result["agreement_vs_fp32"] = compare_probabilities(reference, candidate).as_dict()
    print_json(result)
    return 0
