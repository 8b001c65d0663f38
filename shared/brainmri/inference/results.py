"""Prediction results and the operating-threshold rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brainmri.models.bundle import BundleMetadata


@dataclass(frozen=True, slots=True)
class Prediction:
    """Class probabilities for one input, with ``tumor_prob = 1 - P(no_tumor)``."""

    class_probs: dict[str, float]
    predicted_class: str
    tumor_prob: float
    model_version: str
    tta: bool = False
    slice_tumor_probs: list[float] = field(default_factory=list)

    def has_tumor(self, threshold: float) -> bool:
        return self.tumor_prob >= threshold

    def to_dict(self, threshold: float) -> dict[str, Any]:
        return {
            "class_probs": self.class_probs,
            "predicted_class": self.predicted_class,
            "tumor_prob": self.tumor_prob,
            "threshold": threshold,
            "has_tumor": self.has_tumor(threshold),
            "model_version": self.model_version,
            "tta": self.tta,
            "n_slices": max(1, len(self.slice_tumor_probs)),
        }


def prediction_from_probs(
    slice_probs: np.ndarray, metadata: BundleMetadata, *, tta: bool = False
) -> Prediction:
    """Aggregate (n_slices, K) probabilities by their mean and name the classes from metadata."""
    mean = slice_probs.mean(axis=0)
    no_tumor = metadata.no_tumor_index
    return Prediction(
        class_probs={name: float(mean[i]) for i, name in enumerate(metadata.class_names)},
        predicted_class=metadata.class_names[int(np.argmax(mean))],
        tumor_prob=float(1.0 - mean[no_tumor]),
        model_version=metadata.version,
        tta=tta,
        slice_tumor_probs=[float(1.0 - row[no_tumor]) for row in slice_probs]
        if len(slice_probs) > 1
        else [],
    )


def resolve_threshold(
    request: float | None, configured: float | None, metadata: BundleMetadata
) -> float:
    """A request's threshold beats the configured ``TUMOR_THRESH``, which beats the bundle's.

    (The original service had the first two the wrong way round.)
    """
    if request is not None:
        return float(request)
    if configured is not None:
        return float(configured)
    return float(metadata.default_threshold)
