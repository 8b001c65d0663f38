"""Decoded-once caches and torch datasets for training and evaluation.

Decoding a JPEG costs more than augmenting a small tensor, and this project trains on CPUs,
so every image is decoded exactly once:

* training images are kept as ``uint8 (1, C, C)`` square-resized slices (``C`` a little larger
  than the input size, so random crops still have room);
* evaluation images are kept as the exact float tensor of :func:`preprocess.square_resize` at
  the model size; :class:`EvalDataset` then applies :func:`preprocess.normalize`, so its items
  equal :func:`preprocess.preprocess_slice` of the file - the inference transform - bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from brainmri.concurrency import bounded_map
from brainmri.data.manifest import Sample
from brainmri.imaging.decode import decode_image
from brainmri.imaging.inputs import read_raster_or_reason
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.sandbox import DecodeSandbox
from brainmri.preprocess import (
    PreprocessConfig,
    normalize,
    preprocess_slice,
    square_resize,
    to_uint8,
)
from brainmri.progress import progress_bar

log = logging.getLogger(__name__)


@dataclass
class SliceCache:
    """Square-resized slices of the readable samples, with labels and content hashes."""

    images: torch.Tensor  # (N, 1, C, C) uint8 or float32
    labels: torch.Tensor  # (N,) int64 in the model's class order
    samples: list[Sample]
    sha256: list[str]
    failures: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def build_cache(
    samples: Sequence[Sample],
    class_names: Sequence[str],
    preprocess: PreprocessConfig,
    *,
    size: int,
    as_uint8: bool,
    workers: int = 2,
    progress: bool = True,
    desc: str = "decode",
    limits: InputLimits | None = None,
    sandbox: DecodeSandbox | None = None,
) -> SliceCache:
    """Decode every sample once; unreadable files are reported, not fatal. ``sandbox``: decode
    in its children (the train job), None: in this process (``brainmri train``)."""
    limits = limits or InputLimits()
    index = {name: i for i, name in enumerate(class_names)}

    def load(sample: Sample) -> tuple[torch.Tensor, str] | str:
        outcome = read_raster_or_reason(sample.path, limits, sandbox=sandbox)
        if isinstance(outcome, str):
            return outcome
        pixels, sha256 = outcome
        square = square_resize(pixels, size, preprocess)
        return (to_uint8(square) if as_uint8 else square), sha256

    images, labels, kept, hashes, failures = [], [], [], [], []
    outcomes = bounded_map(load, samples, workers, 64)
    for sample, outcome in progress_bar(
        zip(samples, outcomes, strict=True),
        total=len(samples),
        desc=desc,
        unit="img",
        disable=not progress,
    ):
        if isinstance(outcome, str):
            failures.append(outcome)
            continue
        images.append(outcome[0])
        hashes.append(outcome[1])
        labels.append(index[sample.class_name])
        kept.append(sample)
    if failures:
        log.warning("%d unreadable file(s) skipped, e.g. %s", len(failures), failures[0])
    dtype = torch.uint8 if as_uint8 else torch.float32
    stacked = torch.stack(images) if images else torch.zeros((0, 1, size, size), dtype=dtype)
    return SliceCache(stacked, torch.tensor(labels, dtype=torch.long), kept, hashes, failures)


class TrainDataset(Dataset[tuple[torch.Tensor, int]]):
    """Augmented, normalised training items from a uint8 cache."""

    def __init__(
        self,
        cache: SliceCache,
        preprocess: PreprocessConfig,
        augment: Callable[[torch.Tensor], torch.Tensor],
        post_normalize: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.cache = cache
        self.preprocess = preprocess
        self.augment = augment
        self.post_normalize = post_normalize

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.cache.images[index].float() / 255.0
        tensor = normalize(self.augment(image), self.preprocess)
        return self.post_normalize(tensor), int(self.cache.labels[index])


class EvalDataset(Dataset[tuple[torch.Tensor, int]]):
    """Items identical to the inference transform, from a float cache at the model size."""

    def __init__(self, cache: SliceCache, preprocess: PreprocessConfig) -> None:
        if cache.images.dtype != torch.float32 or cache.images.shape[-1] != preprocess.img_size:
            raise ValueError("EvalDataset needs a float32 cache at the model's img_size")
        self.cache = cache
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return normalize(self.cache.images[index], self.preprocess).contiguous(), int(
            self.cache.labels[index]
        )


def eval_tensor_from_file(sample: Sample, preprocess: PreprocessConfig) -> torch.Tensor:
    """Reference path used by tests: decode + the one preprocessing function."""
    return preprocess_slice(decode_image(sample.path.read_bytes()).pixels, preprocess)
