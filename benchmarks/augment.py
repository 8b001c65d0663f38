"""Data-loader throughput of the training augmentation, per CPU thread, with and without the
head-inversion augmentation (``--invert_prob``).

Why: on a GPU host the loaders, not the GPU, set the pace (benchmarks/README.md), so what one
augmentation costs per image on one core decides how many epochs fit a budget. Each row runs
the trainer's own dataset (uint8 cache -> augmentation -> normalisation) on generated phantoms
in one thread, as a loader worker does.

    python -m benchmarks.augment
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.phantom_cache import phantom_cache
from benchmarks.report import machine_label, print_table, write_results
from brainmri.preprocess import PreprocessConfig
from brainmri.training.augment import build_post_normalize, build_train_transform
from brainmri.training.data import TrainDataset
from brainmri.training.recipes import make_config


def images_per_second(dataset: TrainDataset, rounds: int) -> float:
    for index in range(min(8, len(dataset))):  # warm-up
        dataset[index]
    started = time.perf_counter()
    for _ in range(rounds):
        for index in range(len(dataset)):
            dataset[index]
    return rounds * len(dataset) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    preprocess = PreprocessConfig(img_size=args.img_size)
    cache = phantom_cache(preprocess, make_config("simple", img_size=args.img_size).cache_size)
    rows = []
    for recipe in ("simple", "strong"):
        for invert_prob in (0.0, 0.5):
            augment = make_config(recipe, invert_prob=invert_prob).augment_config
            dataset = TrainDataset(
                cache,
                preprocess,
                build_train_transform(augment, args.img_size),
                build_post_normalize(augment),
            )
            rate = images_per_second(dataset, args.rounds)
            rows.append({"recipe": recipe, "invert_prob": invert_prob, "images_per_s": rate})
    machine = machine_label(1)
    columns = [
        ("recipe", "recipe", ""),
        ("invert_prob", "invert_prob", "g"),
        ("images/s per thread", "images_per_s", ".0f"),
    ]
    print_table(f"augmentation @ {args.img_size}, {machine}", columns, rows)
    payload = {"img_size": args.img_size, "machine": machine, "rows": rows}
    write_results(args.out, f"augment-{args.img_size}", payload)


if __name__ == "__main__":
    main()
