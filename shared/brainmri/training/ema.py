"""Exponential moving average (EMA) of a model's weights.

Why: on a small dataset the weights at the end of any one epoch are a noisy sample around a
good solution; their running average usually generalises better and makes the choice of the
"best epoch" less of a lottery. The average is kept in float32 on the training device, updated
after every optimiser step, and evaluated (and kept) instead of the raw weights when enabled.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """An EMA copy of ``model``.

    ``decay`` is the per-step weight of the old average. Early on the effective decay is
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average is not dominated by
    the first, random weights. Floating-point buffers (BatchNorm running statistics) are
    averaged the same way; integer buffers (``num_batches_tracked``) are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        source = model.state_dict()
        for name, averaged in self.model.state_dict().items():
            value = source[name].detach()
            if averaged.is_floating_point():
                averaged.mul_(decay).add_(value.to(averaged.dtype), alpha=1.0 - decay)
            else:
                averaged.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, object]:
        """For the resume checkpoint: the averaged weights and how many updates made them."""
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.updates = int(state["updates"])  # type: ignore[call-overload]
