"""The issue's "plain 60-line loop", run on this project's own split.

Why: issue 3 asks that the shipped model be clearly better than a plain training loop
(resnet18, grey input at 176 px, bf16, AdamW + one-cycle, flips/affine/intensity jitter,
30 epochs, from scratch) which reached macro-F1 0.982 on *another* duplicate-free split.
Figures from two different splits cannot be compared; this script trains that loop on the
same train CSV and saves an ordinary model bundle, so ``brainmri eval`` + ``brainmri compare``
score both models on the same validation slices, paired by near-duplicate group.

Deliberately plain: no class weights, label smoothing, EMA, warm restarts, early stopping or
best-epoch selection - the last epoch is saved. Only the decoding and the resize come from
the library (so the bundle's preprocessing is exactly what the loop trained on).

    .venv/bin/python -m benchmarks.reference_loop --train-csv runs/split-v2-seed42/train.csv \\
        --out runs/reference-loop-v2
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from brainmri.data.labels import CLASS_NAMES
from brainmri.data.manifest import load_samples
from brainmri.devices import autocast_dtype
from brainmri.models.bundle import BundleMetadata, ModelBundle
from brainmri.models.factory import create_model
from brainmri.preprocess import PreprocessConfig, normalize
from brainmri.progress import progress_bar
from brainmri.training.data import build_cache


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flips, a random affine (rotation 10 deg, shift 6%, scale 0.9-1.1) and brightness /
    contrast jitter of 0.2, drawn per image and applied to the whole batch at once."""
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    angle, scale = uniform(-math.pi / 18, math.pi / 18), uniform(0.9, 1.1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin, uniform(-0.06, 0.06)], 1),
            torch.stack([sin, cos, uniform(-0.06, 0.06)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)
    contrast, brightness = uniform(0.8, 1.2), uniform(-0.2, 0.2)
    return (images * contrast[:, None, None, None] + brightness[:, None, None, None]).clamp(0, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-csv", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="new folder for the bundle")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--img-size", type=int, default=176)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--precision", choices=("auto", "fp32", "bf16"), default="auto", help="as the trainer's"
    )
    args = parser.parse_args(argv)
    dtype = autocast_dtype(torch.device("cpu"), args.precision, purpose="train")

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    preprocess = PreprocessConfig(img_size=args.img_size, resize="squash", in_chans=1)
    samples = load_samples(args.train_csv)
    cache = build_cache(samples, CLASS_NAMES, preprocess, size=args.img_size, as_uint8=True)
    model = create_model("resnet18", num_classes=len(CLASS_NAMES), in_chans=1)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = math.ceil(len(cache) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps
    )
    started = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(cache), generator=generator)
        total, correct, loss_sum = 0, 0, 0.0
        bar = progress_bar(order.split(args.batch_size), total=steps, desc=f"epoch {epoch}")
        for index in bar:
            images = augment_batch(cache.images[index].float() / 255.0, generator)
            inputs = normalize(images, preprocess).contiguous(memory_format=torch.channels_last)
            labels = cache.labels[index]
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += len(index)
            correct += int((logits.argmax(1) == labels).sum())
            loss_sum += float(loss.detach()) * len(index)
            bar.set_postfix(
                loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}", refresh=False
            )
    minutes = (time.monotonic() - started) / 60
    metadata = BundleMetadata(
        arch="resnet18",
        class_names=list(CLASS_NAMES),
        preprocess=preprocess,
        tta_views=["identity", "hflip"],
        provenance={
            "trainer": "benchmarks/reference_loop.py",
            "args": vars(args) | {"train_csv": str(args.train_csv), "out": str(args.out)},
            "minutes": round(minutes, 1),
        },
    )
    ModelBundle.from_model(model.eval(), metadata).save(args.out)
    print(f"saved {args.out} after {args.epochs} epochs in {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
