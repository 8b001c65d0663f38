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
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from brainmri.framing import CropMode


class PreprocessConfig(BaseModel):
    """Geometry and intensity mapping from a decoded slice to a model input tensor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    img_size: int = Field(224, ge=32, le=2048, description="Square side fed to the network.")
    resize: Literal["letterbox", "squash"] = Field(
        "letterbox",
        description="letterbox: pad the short side with black to a square, then resize "
        "(keeps anatomy proportions); squash: resize straight to a square (the original).",
    )
    crop: CropMode = Field(
        "none",
        description="head: first crop the slice to the head's bounding box plus a margin "
        "(head_box), so the head fills the input whatever the field of view and the network's "
        "pixels go to anatomy, not air; none: the whole slice (every bundle before the option).",
    )
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    antialias: bool = True
    in_chans: Literal[1, 3] = Field(3, description="Grey is replicated to this many channels.")
    mean: float = 0.5
    std: float = Field(0.5, gt=0)

    @model_serializer(mode="wrap")
    def _omit_whole_slice_crop(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``crop`` is written only when it crops. Versions before the option refuse unknown
        fields, so a bundle that does not crop stays loadable by them: the older workers of a
        rolling upgrade can still serve a model the new trainer promoted."""
        data: dict[str, Any] = handler(self)
        if data.get("crop") == "none":
            del data["crop"]
        return data


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle of pixels: rows ``top .. top + height``, columns ``left .. left + width``."""

    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True, slots=True)
class ContentBox:
    """Where the slice's ``source`` region (the whole slice, or its head box) lies inside the
    square model input (for mapping CAMs back)."""

    top: int
    left: int
    height: int
    width: int
    source: Box


#: A pixel belongs to the head when brighter than this share of the slice's 99th percentile:
#: well above scanner noise and JPEG ringing in the air, well below any tissue.
HEAD_LEVEL = 0.1
#: A row (column) is part of the head when at least this share of it (and 2 pixels) is head,
#: so lone specks and thin burnt-in text lines do not widen the box.
HEAD_LINE_SHARE = 0.01
#: Air kept around the head, as a share of the box's longer side, so augmentation's crops and
#: rotations do not cut into the skull.
HEAD_MARGIN = 0.05
#: A "head" smaller than this share of the slice's longer side is not trusted (a bright
#: marker on a black slice, say): the whole slice is used instead.
HEAD_MIN_SHARE = 0.25


def _extent(line_has_head: torch.Tensor) -> tuple[int, int] | None:
    hits = torch.nonzero(line_has_head).flatten()
    return (int(hits[0]), int(hits[-1]) + 1) if len(hits) else None


def head_box(pixels: np.ndarray | torch.Tensor) -> Box:
    """The head's bounding box in a (H, W) slice, with a margin; the whole slice when no head
    can be told from the air.

    Why: the public slices frame the head anywhere from edge to edge to half the image, and
    other sites frame theirs differently again. Cropping to the head first gives the network
    the same scale whatever the field of view, and spends its pixels on anatomy; the frame
    itself (how much air, which border) stops being a cue the model could learn a source from.
    """
    tensor = _as_tensor(pixels)
    height, width = tensor.shape
    whole = Box(0, 0, height, width)
    step = max(1, max(height, width) // 512)  # the level from a thumbnail: fast on big slices
    peak = float(np.percentile(tensor[::step, ::step].numpy(), 99))
    if peak <= 0:
        return whole
    head = tensor > HEAD_LEVEL * peak
    rows = _extent(head.sum(dim=1) >= max(2, HEAD_LINE_SHARE * width))
    cols = _extent(head.sum(dim=0) >= max(2, HEAD_LINE_SHARE * height))
    if rows is None or cols is None:
        return whole
    (top, bottom), (left, right) = rows, cols
    longest = max(bottom - top, right - left)
    if longest < HEAD_MIN_SHARE * max(height, width):
        return whole
    margin = round(HEAD_MARGIN * longest)
    top, left = max(0, top - margin), max(0, left - margin)
    bottom, right = min(height, bottom + margin), min(width, right + margin)
    return Box(top, left, bottom - top, right - left)


def source_box(pixels: np.ndarray | torch.Tensor, config: PreprocessConfig) -> Box:
    """The region of the slice that ``config`` feeds to the network."""
    if config.crop == "head":
        return head_box(pixels)
    height, width = pixels.shape[-2:]
    return Box(0, 0, int(height), int(width))


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
    if config.crop == "head":
        box = head_box(tensor)
        tensor = tensor[box.top : box.top + box.height, box.left : box.left + box.width]
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


def content_box(pixels: np.ndarray | torch.Tensor, config: PreprocessConfig) -> ContentBox:
    """Region of the model input that shows the slice's source region (:func:`source_box`):
    the whole square for squash, the letterbox's inner rectangle otherwise."""
    size = config.img_size
    source = source_box(pixels, config)
    height, width = source.height, source.width
    if config.resize == "squash" or height == width:
        return ContentBox(0, 0, size, size, source)
    side = max(height, width)
    scale = size / side
    box_h, box_w = round(height * scale), round(width * scale)
    return ContentBox((size - box_h) // 2, (size - box_w) // 2, box_h, box_w, source)
