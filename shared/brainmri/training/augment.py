"""Training-time augmentation on square-resized grey slices.

Input: ``(1, C, C)`` float tensors in [0, 1] from :func:`brainmri.preprocess.square_resize`
(the evaluation geometry at a slightly larger cache size). Output: ``(1, S, S)`` in [0, 1];
the trainer then applies :func:`brainmri.preprocess.normalize`, the same intensity mapping
used at inference. Random erasing runs after normalisation (erased pixels = the mean).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torchvision.transforms import v2

from brainmri.preprocess import PreprocessConfig, square_resize


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """Augmentation strengths.

    ``scale`` is the crop area as a fraction of the whole slice. The training cache holds the
    whole slice at a higher resolution than the model size (headroom for resampling, not a
    spatial margin), so a crop of area 1.0 shows the slice at exactly the size inference sees.
    """

    scale: tuple[float, float] = (0.85, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)
    hflip: float = 0.5
    rotate_degrees: float = 10.0
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: tuple[float, float] = (1.0, 1.0)
    blur_p: float = 0.0
    erase_p: float = 0.0
    # Share of slices whose head (not the air around it) is intensity-inverted. In the public
    # data the classes differ by MR sequence as well as pathology (no_tumor mostly T2/FLAIR,
    # tumours T1; MODEL_CARD.md), and inversion roughly swaps the two looks (CSF dark <-> bright).
    invert_p: float = 0.0
    # Share of slices cropped to the head's bounding box (then letterboxed back to full size)
    # before the random crop. In the public data the classes are framed differently (the head
    # fills ~0.92 of the frame on glioma and meningioma slices, 1.00 on the others:
    # scripts/head_framing.py), so framing tells the source and so the class; showing some
    # slices tightly framed makes that cue unreliable without taking it away from every slice.
    head_crop_p: float = 0.0

    def consistent_tta_views(self) -> list[str]:
        """TTA views this augmentation trained the model to expect."""
        views = ["identity"]
        if self.hflip > 0:
            views.append("hflip")
        if self.rotate_degrees >= 10:
            views += ["rot+10", "rot-10"]
        return views


LIGHT = AugmentConfig()
STRONG = AugmentConfig(
    scale=(0.6, 1.0),
    ratio=(0.85, 1.15),
    rotate_degrees=15.0,
    brightness=0.25,
    contrast=0.25,
    gamma=(0.8, 1.25),
    blur_p=0.2,
    erase_p=0.25,
)


class RandomGamma(torch.nn.Module):
    """Intensity gamma in [low, high] - MRI contrast varies between scanners and sequences."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        gamma = self.low + (self.high - self.low) * float(torch.rand(()))
        return image.clamp(0.0, 1.0).pow(gamma)


def head_mask(image: torch.Tensor, level: float = 0.05) -> torch.Tensor:
    """Where the head is in a ``(1, H, W)`` slice in [0, 1]: brighter than ``level``, with
    specks of bright air removed (a 3x3 opening) and holes such as dark CSF filled (a 9x9
    closing). Unlike a blurred threshold it does not reach past the skull, so nothing outside
    the head changes.

    scipy's rank filters are separable and run in C: about 1 ms per 224 px slice on one core,
    against 7 ms for the same mask from ``torch.max_pool2d``, which made the data loaders, and
    so GPU training with this augmentation, three times slower (2026-12-04).
    """
    mask = (image[0].numpy() > level).astype(np.uint8)
    mask = ndimage.minimum_filter(mask, 3, mode="constant", cval=1)  # opening: erode ...
    mask = ndimage.maximum_filter(mask, 3, mode="constant", cval=0)  # ... then dilate
    mask = ndimage.maximum_filter(mask, 9, mode="constant", cval=0)  # closing: dilate ...
    mask = ndimage.minimum_filter(mask, 9, mode="constant", cval=1)  # ... then erode
    return torch.from_numpy(mask.astype(bool)).unsqueeze(0)


def invert_head(image: torch.Tensor, level: float = 0.05) -> torch.Tensor:
    """``x -> 1 - x`` inside :func:`head_mask`, the air left as it is: roughly swaps the T1 and
    T2 looks of a slice (CSF dark or bright). The training augmentation and the shortcut probe
    (``scripts/invert_slices.py``) both use it."""
    return torch.where(head_mask(image, level), 1.0 - image.clamp(0.0, 1.0), image)


class RandomForegroundInversion(torch.nn.Module):
    """With probability ``p``, map the head's intensities ``x -> 1 - x`` and leave the air at 0.

    Inverting the whole slice would also turn the background white, a cue of its own that a
    network learns at once, so only the head is inverted (:func:`invert_head`).
    """

    def __init__(self, p: float, level: float = 0.05) -> None:
        super().__init__()
        self.p, self.level = p, level

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return image
        return invert_head(image, self.level)


class RandomHeadCrop(torch.nn.Module):
    """With probability ``p``, show a ``(1, S, S)`` slice as ``crop="head"`` shows it at
    inference (head box, letterbox, resize back to ``S x S``: the same
    :func:`brainmri.preprocess.square_resize`), alongside the data's own framing. A head that
    already fills the frame comes back unchanged: a same-size resize is exact."""

    GEOMETRY = PreprocessConfig(crop="head")

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return image
        return square_resize(image[0], image.shape[-1], self.GEOMETRY)


def build_train_transform(
    config: AugmentConfig, img_size: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Geometric + intensity augmentation ending at ``img_size`` (before normalisation)."""
    steps: list[torch.nn.Module] = []
    if config.head_crop_p > 0:
        steps.append(RandomHeadCrop(config.head_crop_p))
    steps.append(
        v2.RandomResizedCrop(img_size, scale=config.scale, ratio=config.ratio, antialias=True)
    )
    if config.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(config.hflip))
    if config.rotate_degrees > 0:
        steps.append(
            v2.RandomRotation(
                config.rotate_degrees, interpolation=v2.InterpolationMode.BILINEAR, fill=0.0
            )
        )
    if config.invert_p > 0:
        steps.append(RandomForegroundInversion(config.invert_p))
    if config.brightness or config.contrast:
        steps.append(v2.ColorJitter(brightness=config.brightness, contrast=config.contrast))
    if config.gamma != (1.0, 1.0):
        steps.append(RandomGamma(*config.gamma))
    if config.blur_p > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.2))], p=config.blur_p))
    steps.append(v2.Lambda(lambda image: image.clamp(0.0, 1.0)))
    return v2.Compose(steps)


def build_post_normalize(config: AugmentConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    if config.erase_p <= 0:
        return lambda tensor: tensor
    return v2.RandomErasing(p=config.erase_p, scale=(0.02, 0.15), value=0.0)
