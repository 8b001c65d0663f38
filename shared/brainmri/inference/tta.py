"""Test-time augmentation views, applied to a whole batch at once.

Only views the model saw during training should be used (the original averaged 90-degree
rotations the model had never been trained on). A bundle lists its consistent views in
``metadata.tta_views``; the legacy rotations remain available by name for comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms.v2 import functional as TF

View = Callable[[torch.Tensor, float], torch.Tensor]


def _rotate(degrees: float) -> View:
    def view(batch: torch.Tensor, fill: float) -> torch.Tensor:
        return TF.rotate(batch, degrees, interpolation=TF.InterpolationMode.BILINEAR, fill=fill)

    return view


def _zoom(scale: float) -> View:
    def view(batch: torch.Tensor, fill: float) -> torch.Tensor:
        size = batch.shape[-1]
        crop = max(1, round(size / scale))
        cropped = TF.center_crop(batch, [crop, crop])
        return TF.resize(cropped, [size, size], antialias=True)

    return view


VIEWS: dict[str, View] = {
    "identity": lambda batch, fill: batch,
    "hflip": lambda batch, fill: torch.flip(batch, dims=(-1,)),
    "vflip": lambda batch, fill: torch.flip(batch, dims=(-2,)),
    "rot90": lambda batch, fill: torch.rot90(batch, 1, dims=(-2, -1)),
    "rot180": lambda batch, fill: torch.rot90(batch, 2, dims=(-2, -1)),
    "rot270": lambda batch, fill: torch.rot90(batch, 3, dims=(-2, -1)),
    "rot+10": _rotate(10.0),
    "rot-10": _rotate(-10.0),
    "zoom1.1": _zoom(1.1),
}


def validate_views(views: Sequence[str]) -> tuple[str, ...]:
    unknown = [name for name in views if name not in VIEWS]
    if unknown:
        raise ValueError(f"unknown TTA view(s) {unknown}; known: {sorted(VIEWS)}")
    if not views:
        raise ValueError("at least one TTA view is needed")
    return tuple(views)


def expand_views(batch: torch.Tensor, views: Sequence[str], fill: float) -> torch.Tensor:
    """(N, C, S, S) -> (V*N, C, S, S), view-major, for one forward pass over all views."""
    return torch.cat([VIEWS[name](batch, fill) for name in views], dim=0)


def average_views(probs: torch.Tensor, n_views: int) -> torch.Tensor:
    """(V*N, K) probabilities -> (N, K) mean over views."""
    return probs.reshape(n_views, -1, probs.shape[-1]).mean(dim=0)
