"""Synthetic brain-like MRI slices whose class is learnable - for tests and demos.

Not anatomy, but it has what the pipeline needs: an elliptical head with a bright skull ring,
textured parenchyma, dark ventricles, noise, and a class-dependent lesion:

* ``no_tumor``   - none;
* ``glioma``     - an irregular, heterogeneous intra-axial mass with a dark core, in one hemisphere;
* ``meningioma`` - a bright, sharp, homogeneous round mass touching the inner skull;
* ``pituitary``  - a small bright round mass low in the midline (the sella).

Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from brainmri.data.labels import CLASS_NAMES

#: Folder names used when writing a dataset (the real data's spelling, to exercise aliases).
FOLDER_NAMES = {
    "no_tumor": "notumor",
    "glioma": "glioma",
    "meningioma": "meningioma",
    "pituitary": "pituitary",
}


def generate_phantom(class_name: str, *, seed: int, size: int = 128) -> np.ndarray:
    """One ``uint8 (size, size)`` slice of ``class_name``."""
    if class_name not in CLASS_NAMES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASS_NAMES}")
    rng = np.random.default_rng(seed)
    # Explicit slice objects: the same as ``a:b:c``, but mypy only allows int bounds in that
    # syntax, and mgrid's complex step means "this many points".
    y, x = np.mgrid[slice(-1.0, 1.0, size * 1j), slice(-1.0, 1.0, size * 1j)]
    cx, cy = rng.uniform(-0.05, 0.05, size=2)
    ax, ay = rng.uniform(0.70, 0.80), rng.uniform(0.82, 0.92)
    angle = rng.uniform(-0.15, 0.15)
    xr = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    yr = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    radius = np.sqrt((xr / ax) ** 2 + (yr / ay) ** 2)

    image = np.zeros((size, size), dtype=np.float64)
    brain = radius < 0.92
    texture = gaussian_filter(rng.normal(size=(size, size)), sigma=size / 24)
    texture /= np.abs(texture).max() + 1e-9
    image[brain] = 0.42 + 0.08 * texture[brain]
    image[(radius >= 0.92) & (radius < 1.0)] = 0.85
    for side in (-1.0, 1.0):
        ventricle = ((xr - side * 0.12 * ax) / (0.08 * ax)) ** 2 + ((yr + 0.05) / (0.25 * ay)) ** 2
        image[ventricle < 1.0] = 0.12

    lesion = _lesion(class_name, rng, xr / ax, yr / ay, size)
    image = np.where(lesion > 0, np.clip(image + lesion, 0.0, 1.0), image)
    image += rng.normal(scale=0.025, size=image.shape)
    image[radius >= 1.0] = np.abs(rng.normal(scale=0.01, size=int((radius >= 1.0).sum())))
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _lesion(
    class_name: str, rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: int
) -> np.ndarray:
    """Additive intensity of the class's lesion in normalised head coordinates (u, v)."""
    if class_name == "no_tumor":
        return np.zeros_like(u)
    if class_name == "glioma":
        side = rng.choice([-1.0, 1.0])
        centre = np.array([side * rng.uniform(0.3, 0.5), rng.uniform(-0.4, 0.2)])
        mass = np.zeros_like(u)
        for _ in range(3):
            offset = centre + rng.normal(scale=0.08, size=2)
            spread = rng.uniform(0.10, 0.16)
            mass += np.exp(-((u - offset[0]) ** 2 + (v - offset[1]) ** 2) / (2 * spread**2))
        mass = np.clip(mass, 0.0, 1.0)
        rough = gaussian_filter(rng.normal(size=u.shape), sigma=size / 64)
        core = np.exp(-((u - centre[0]) ** 2 + (v - centre[1]) ** 2) / (2 * 0.05**2))
        return np.where(mass > 0.35, 0.32 + 0.12 * rough - 0.45 * core, 0.0)
    if class_name == "meningioma":
        theta = rng.uniform(-np.pi, np.pi)
        r = rng.uniform(0.10, 0.15)
        centre = (0.92 - r) * np.array([np.cos(theta), np.sin(theta)])
        disk = (u - centre[0]) ** 2 + (v - centre[1]) ** 2 < r**2
        return np.where(disk, 0.45, 0.0)
    r = rng.uniform(0.08, 0.11)
    centre = np.array([rng.uniform(-0.03, 0.03), rng.uniform(0.30, 0.42)])
    blob = (u - centre[0]) ** 2 + (v - centre[1]) ** 2 < r**2
    return np.where(blob, 0.5, 0.0)


def phantom_png(class_name: str, *, seed: int, size: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(generate_phantom(class_name, seed=seed, size=size), mode="L").save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def write_phantom_dataset(
    root: Path,
    *,
    per_class: int,
    size: int = 128,
    seed: int = 0,
    classes: Iterable[str] = CLASS_NAMES,
    image_format: str = "PNG",
) -> dict[str, int]:
    """Write ``root/<class folder>/<class>_<i>.png`` images; returns counts per class."""
    counts: dict[str, int] = {}
    extension = {"PNG": "png", "JPEG": "jpg"}[image_format]
    for class_index, class_name in enumerate(classes):
        folder = Path(root) / FOLDER_NAMES[class_name]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = generate_phantom(
                class_name, seed=seed * 1_000_003 + class_index * 10_007 + i, size=size
            )
            Image.fromarray(pixels, mode="L").save(
                folder / f"{class_name}_{i:04d}.{extension}", format=image_format
            )
        counts[class_name] = per_class
    return counts
