"""The one preprocessing definition.

A :class:`PreprocessConfig` is stored in every model bundle's metadata and every path that feeds
a model - training-time evaluation, local prediction, the service worker, ONNX export and the
benchmarks - builds its tensors with :func:`preprocess_slice` from that config. Training
augmentation starts from :func:`square_resize` (the same geometry) and ends with
:func:`normalize` (the same intensity mapping), so the only difference is the random part.

Input to this module is always a decoded grey slice: ``float32 (H, W)`` in ``[0, 1]`` as
produced by :mod:`brainmri.imaging`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field


class PreprocessConfig(BaseModel):
    """Geometry and intensity mapping from a decoded slice to a model input tensor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    img_size: int = Field(224, ge=32, le=2048, description="Square side fed to the network.")
    resize: Literal["letterbox", "squash"] = Field(
        "letterbox",
        description="letterbox: pad the short side with black to a square, then resize "
        "(keeps anatomy proportions); squash: resize straight to a square (the original).",
    )
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    antialias: bool = True
    in_chans: Literal[1, 3] = Field(3, description="Grey is replicated to this many channels.")
    mean: float = 0.5
    std: float = Field(0.5, gt=0)


@dataclass(frozen=True, slots=True)
class ContentBox:
    """Where the original image lies inside the square model input (for mapping CAMs back)."""

    top: int
    left: int
    height: int
    width: int


def _as_tensor(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = (
        torch.as_tensor(np.ascontiguousarray(pixels)) if isinstance(pixels, np.ndarray) else pixels
    )
    if tensor.ndim != 2:
        raise ValueError(f"expected a 2-D grey slice, got shape {tuple(tensor.shape)}")
    return tensor.to(torch.float32)


def pad_to_square(pixels: torch.Tensor) -> torch.Tensor:
    """Pad a (H, W) tensor symmetrically with zeros to (max, max)."""
    height, width = pixels.shape[-2:]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return F.pad(pixels, (left, side - width - left, top, side - height - top))


def square_resize(
    pixels: np.ndarray | torch.Tensor, size: int, config: PreprocessConfig
) -> torch.Tensor:
    """Geometry step: (H, W) slice -> (1, size, size) tensor in [0, 1]."""
    tensor = _as_tensor(pixels)
    if config.resize == "letterbox":
        tensor = pad_to_square(tensor)
    resized = F.interpolate(
        tensor[None, None],
        size=(size, size),
        mode=config.interpolation,
        antialias=config.antialias,
        align_corners=False,
    )[0]
    return resized.clamp_(0.0, 1.0)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8, rounded. The training cache and data packs both store slices so,
    which is what lets a pack made at the cache size reproduce the cache."""
    return (image * 255.0 + 0.5).to(torch.uint8)


def normalize(batch: torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """Intensity step: (..., 1, S, S) in [0, 1] -> (..., in_chans, S, S) normalised."""
    normalised = (batch - config.mean) / config.std
    if config.in_chans == 1:
        return normalised
    repeats = [1] * normalised.ndim
    repeats[-3] = config.in_chans
    return normalised.repeat(*repeats)


def preprocess_slice(pixels: np.ndarray | torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """The evaluation transform: decoded slice -> (in_chans, S, S) float32 model input."""
    return normalize(square_resize(pixels, config.img_size, config), config).contiguous()


def content_box(height: int, width: int, config: PreprocessConfig) -> ContentBox:
    """Region of the model input that shows the original image (whole square for squash)."""
    size = config.img_size
    if config.resize == "squash" or height == width:
        return ContentBox(0, 0, size, size)
    side = max(height, width)
    scale = size / side
    box_h, box_w = round(height * scale), round(width * scale)
    return ContentBox((size - box_h) // 2, (size - box_w) // 2, box_h, box_w)
