"""Temperature scaling and operating-threshold selection.

Both are fitted on a *calibration* split that was not used to choose the checkpoint (the
original tuned its threshold on the very split that picked the checkpoint, which flatters it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from brainmri.evaluation.metrics import SWEEP, binary_rates, youden_threshold


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, *, max_iter: int = 200) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al., 2017)."""
    if len(y_true) == 0:
        return 1.0
    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    labels_t = torch.as_tensor(y_true, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_t.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.exp().item())
    return float(np.clip(temperature, 0.05, 20.0))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


# Above 0.5 a slice whose most likely class is a tumour class can still be reported
# ``has_tumor = false``: if the argmax is a tumour class, P(no_tumor) < 0.5, so tumor_prob > 0.5.
# A fitted threshold never exceeds this, so the binary flag never contradicts the class.
MAX_FITTED_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    threshold: float
    policy: str
    sensitivity: float | None
    specificity: float | None
    uncapped: float  # what the policy asked for before the 0.5 cap, kept for the record

    @property
    def source(self) -> str:
        return f"{self.policy} on the calibration split"


def choose_threshold(y_bin: np.ndarray, tumor_prob: np.ndarray, policy: str) -> ThresholdChoice:
    """``youden`` or ``sensitivity:<target>`` on a calibration split, at most 0.5.

    ``sensitivity:<target>`` takes the highest sweep threshold meeting the target, which keeps
    specificity as high as possible while missing no more tumors than the target allows; it
    falls back to Youden's J if no threshold meets it without flagging every no-tumour slice.
    Either choice is capped at ``MAX_FITTED_THRESHOLD``: a confident model leaves a wide gap
    between its tumour and no-tumour probabilities, and the highest threshold meeting a
    sensitivity target on a few hundred images sits at the edge of that gap (0.97 for one
    model here), where it both contradicts the predicted class and does not carry over to new
    images. ``TUMOR_THRESH`` can still set any threshold explicitly.
    """
    if policy.startswith("sensitivity:"):
        target = float(policy.split(":", 1)[1])
        # A threshold that flags every no-tumour slice meets any target and tells nothing
        # (a model with two confident misses on the calibration split got 0.00 this way).
        meeting = []
        for t in SWEEP:
            rates = binary_rates(y_bin, tumor_prob, float(t))
            if (rates["sensitivity"] or 0.0) >= target and (rates["specificity"] or 0.0) > 0.0:
                meeting.append(float(t))
        if meeting:
            return _choice(y_bin, tumor_prob, max(meeting), policy)
    elif policy != "youden":
        raise ValueError(f"unknown threshold policy {policy!r}; use youden or sensitivity:<x>")
    threshold, _ = youden_threshold(y_bin, tumor_prob)
    return _choice(y_bin, tumor_prob, 0.5 if threshold is None else threshold, "youden")


def _choice(
    y_bin: np.ndarray, tumor_prob: np.ndarray, threshold: float, policy: str
) -> ThresholdChoice:
    capped = min(threshold, MAX_FITTED_THRESHOLD)
    rates = binary_rates(y_bin, tumor_prob, capped)
    return ThresholdChoice(capped, policy, rates["sensitivity"], rates["specificity"], threshold)
