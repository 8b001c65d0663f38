"""Inference throughput: the original service's per-image loop vs the project's engine.

One run, same weights, same files:

* ``original``: one image at a time, PIL RGB -> Resize(224) -> ToTensor -> Normalize, fp32 eager
  NCHW, batch 1; with TTA, six separate forwards (identity, flips, 90/180/270 rotations) as the
  original did;
* ``engine/<backend>``: :class:`brainmri.inference.engine.InferenceEngine` - parallel decoding,
  batches, channels-last, TTA views in one forward - for the eager fp32, bf16 (where native) and
  ONNX Runtime backends, each checked for agreement with eager fp32.

All timings start from image files on disk and end at class probabilities.

    python benchmarks/inference.py --arch resnet34 --img-size 224 --n 96
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from brainmri.devices import bf16_supported
from brainmri.inference.agreement import compare_probabilities
from brainmri.inference.engine import InferenceEngine
from brainmri.inference.results import Prediction
from brainmri.models.bundle import BundleMetadata, ModelBundle, load_bundle
from brainmri.models.factory import create_model
from brainmri.phantom import generate_phantom
from brainmri.preprocess import PreprocessConfig

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-tumor-mri"
CLASSES = ["no_tumor", "glioma", "meningioma", "pituitary"]


def make_images(n: int, folder: Path) -> list[Path]:
    """Real JPEGs when the data is here (the realistic case), else 512 px phantom JPEGs."""
    if REAL_DATA.is_dir():
        files = sorted(p for p in REAL_DATA.rglob("*.jpg") if p.is_file())
        step = max(1, len(files) // n)
        return files[::step][:n]
    paths = []
    for i in range(n):
        path = folder / f"img{i:04d}.jpg"
        Image.fromarray(generate_phantom(CLASSES[i % 4], seed=i, size=512)).save(path, quality=92)
        paths.append(path)
    return paths


def make_bundle(arch: str, img_size: int, folder: Path, model_dir: Path | None) -> ModelBundle:
    if model_dir is not None:
        return load_bundle(model_dir)
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4)
    metadata = BundleMetadata(
        arch=arch,
        class_names=CLASSES,
        preprocess=PreprocessConfig(img_size=img_size, resize="squash"),
        tta_views=["identity", "hflip"],
    )
    bundle = ModelBundle.from_model(model, metadata)
    bundle.save(folder / "bundle")
    return load_bundle(folder / "bundle")


def original_loop(bundle: ModelBundle, paths: list[Path], tta: bool) -> tuple[float, np.ndarray]:
    """The original service's per-request path, reproduced faithfully (batch 1, fp32 eager)."""
    model = bundle.build_model().eval()
    size = bundle.metadata.preprocess.img_size
    transform = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    views = (
        [
            lambda x: x,
            lambda x: torch.flip(x, [3]),
            lambda x: torch.flip(x, [2]),
            lambda x: torch.rot90(x, 1, [2, 3]),
            lambda x: torch.rot90(x, 2, [2, 3]),
            lambda x: torch.rot90(x, 3, [2, 3]),
        ]
        if tta
        else [lambda x: x]
    )
    outputs = []
    started = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            x = transform(Image.open(path).convert("RGB")).unsqueeze(0)
            probs = torch.stack([torch.softmax(model(view(x)), 1) for view in views]).mean(0)
            outputs.append(probs[0].numpy())
    return time.perf_counter() - started, np.stack(outputs)


def engine_run(
    bundle: ModelBundle, paths: list[Path], backend: str, tta: bool, batch_size: int
) -> tuple[float, np.ndarray]:
    engine = InferenceEngine(
        bundle,
        backend=backend,
        device="cpu",
        batch_size=batch_size,
        decode_workers=2,
        onnx_cache_dir=Path(tempfile.gettempdir()),
    )
    engine.predict_sources(paths[:batch_size], tta=tta)  # warm-up: oneDNN/ORT kernel selection
    started = time.perf_counter()
    results = engine.predict_sources(paths, tta=tta)
    elapsed = time.perf_counter() - started
    probs = np.array(
        [
            [r.class_probs[c] for c in engine.class_names]
            for r in results
            if isinstance(r, Prediction)
        ]
    )
    return elapsed, probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet34")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="an existing bundle")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_images(args.n, folder)
        bundle = make_bundle(args.arch, args.img_size, folder, args.model)
        backends = ["eager", "onnx"] + (["bf16"] if bf16_supported(torch.device("cpu")) else [])
        for tta in (False, True):
            baseline_times = []
            for _ in range(args.repeats):
                seconds, _ = original_loop(bundle, paths, tta)
                baseline_times.append(seconds)
            base = len(paths) / statistics.median(baseline_times)
            rows.append(
                {
                    "tta": tta,
                    "pipeline": "original loop (batch 1, fp32)",
                    "images_per_s": base,
                    "speedup": 1.0,
                }
            )
            eager_probs = None
            for backend in backends:
                times = []
                for _ in range(args.repeats):
                    seconds, probs = engine_run(bundle, paths, backend, tta, args.batch_size)
                    times.append(seconds)
                rate = len(paths) / statistics.median(times)
                if backend == "eager":
                    eager_probs = probs
                agreement = compare_probabilities(eager_probs, probs)
                rows.append(
                    {
                        "tta": tta,
                        "pipeline": f"engine/{backend}",
                        "images_per_s": rate,
                        "speedup": rate / base,
                        "top1_vs_fp32": agreement.top1_agreement,
                        "max_prob_diff_vs_fp32": agreement.max_prob_diff,
                    }
                )
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"\n{args.arch} @ {args.img_size}, {args.n} images, torch {torch.__version__}, {machine}")
    print("| TTA | pipeline | images/s | vs original | top-1 vs fp32 | max Δp vs fp32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {'yes' if row['tta'] else 'no'} | {row['pipeline']} | {row['images_per_s']:.1f} "
            f"| {row['speedup']:.2f}x | {row.get('top1_vs_fp32', 1.0):.3f} | "
            f"{row.get('max_prob_diff_vs_fp32', 0.0):.1e} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"inference-{args.arch}-{args.img_size}.json").write_text(
        json.dumps(
            {
                "arch": args.arch,
                "img_size": args.img_size,
                "n": args.n,
                "machine": machine,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
