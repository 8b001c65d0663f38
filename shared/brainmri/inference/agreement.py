"""How closely a backend's probabilities follow the fp32 eager reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Agreement:
    n: int
    top1_agreement: float  # fraction of inputs with the same arg-max class
    max_prob_diff: float  # largest absolute difference of any class probability
    mean_prob_diff: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def compare_probabilities(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch {reference.shape} vs {candidate.shape}")
    diff = np.abs(reference - candidate)
    return Agreement(
        n=int(reference.shape[0]),
        top1_agreement=float(np.mean(reference.argmax(1) == candidate.argmax(1))),
        max_prob_diff=float(diff.max(initial=0.0)),
        mean_prob_diff=float(diff.mean()) if diff.size else 0.0,
    )
