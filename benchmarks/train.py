"""Training throughput of the strong recipe: fp32 vs bf16 autocast, NCHW vs channels-last.

Each configuration runs real training steps - augmentation from the decoded cache, MixUp/CutMix,
class-weighted soft cross-entropy, AdamW, gradient clipping - on generated phantoms, and reports
images per second after warm-up.

    python -m benchmarks.train --arch resnet34 --img-size 224 --steps 6
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.phantom_cache import phantom_cache
from benchmarks.report import machine_label, print_table, write_results
from brainmri.devices import bf16_supported
from brainmri.models.factory import create_model
from brainmri.preprocess import PreprocessConfig
from brainmri.training.augment import build_post_normalize, build_train_transform
from brainmri.training.data import TrainDataset
from brainmri.training.mixing import BatchMixer, soft_cross_entropy
from brainmri.training.recipes import make_config


def measure(
    arch: str,
    img_size: int,
    batch: int,
    steps: int,
    bf16: bool,
    channels_last: bool,
    loader: DataLoader,
) -> float:
    torch.manual_seed(0)
    config = make_config("strong", arch=arch, img_size=img_size)
    model = create_model(arch, num_classes=4, drop_rate=config.drop_rate)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    mixer = BatchMixer(4, label_smoothing=config.label_smoothing, prob=config.mix_prob)
    model.train()
    iterator = iter(loader)
    timed, started = 0, 0.0
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            started = time.perf_counter()
        try:
            images, labels = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            images, labels = next(iterator)
        images, targets = mixer(images, labels)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = soft_cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if step >= 2:
            timed += images.shape[0]
    return timed / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet34")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    config = make_config("strong", img_size=args.img_size)
    preprocess = PreprocessConfig(img_size=args.img_size)
    cache = phantom_cache(preprocess, config.cache_size)
    augment = config.augment_config
    dataset = TrainDataset(
        cache,
        preprocess,
        build_train_transform(augment, args.img_size),
        build_post_normalize(augment),
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
    rows = []
    for bf16 in (False, True):
        if bf16 and not bf16_supported(torch.device("cpu")):
            continue
        for channels_last in (False, True):
            rate = measure(
                args.arch, args.img_size, args.batch_size, args.steps, bf16, channels_last, loader
            )
            rows.append(
                {
                    "precision": "bf16" if bf16 else "fp32",
                    "layout": "channels_last" if channels_last else "NCHW",
                    "images_per_s": rate,
                }
            )
    machine = machine_label(torch.get_num_threads())
    columns = [
        ("precision", "precision", ""),
        ("layout", "layout", ""),
        ("train images/s", "images_per_s", ".1f"),
    ]
    caption = f"strong recipe, {args.arch} @ {args.img_size}, batch {args.batch_size}, {machine}"
    print_table(caption, columns, rows)
    payload = {"arch": args.arch, "img_size": args.img_size, "machine": machine, "rows": rows}
    write_results(args.out, f"train-{args.arch}-{args.img_size}", payload)


if __name__ == "__main__":
    main()
