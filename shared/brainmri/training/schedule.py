"""What a training run's optimisation follows: parameter groups, class weights, the learning-rate
schedule and how many epochs a time budget allows. Pure functions and one small callable,
kept apart from the loop (:mod:`brainmri.training.trainer`) so they can be read and tested on
their own."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weights, none on biases and norm parameters."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class WarmupCosine:
    """Learning-rate factor per optimiser step: linear warm-up, then cosine decay to
    ``min_ratio`` at ``total_steps``.

    A callable object rather than a closure so that ``LambdaLR.state_dict`` saves its fields:
    a time budget can shorten ``total_steps`` mid-run, and resume must restore that horizon.
    """

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float) -> None:
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / max(1, self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.min_ratio + (1.0 - self.min_ratio) * cosine


def epochs_within_budget(
    durations: Sequence[float], most: int, budget_s: float, margin: float = 1.05
) -> int:
    """How many epochs in all fit into ``budget_s`` seconds, given the wall time each epoch so
    far took (``durations``), never more than ``most`` nor fewer than those already run.

    The per-epoch estimate is the median of the last ten epochs after the first (the first
    carries one-off costs: worker start-up, cuDNN autotuning, cold caches), so one epoch
    slowed by another job on the machine does not cut the run short; the time it took is still
    spent. ``margin`` pads the estimate for jitter.
    """
    done = len(durations)
    if done == 0:
        return most
    steady = durations[1:][-10:] if done >= 2 else durations
    per_epoch = max(statistics.median(steady), 1e-6) * margin
    affordable = done + int(max(0.0, budget_s - sum(durations)) // per_epoch)
    return max(done, min(most, affordable))


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights, mean 1 (an absent class counts as one image)."""
    counts = torch.bincount(labels, minlength=num_classes).float().clamp(min=1.0)
    weights = counts.sum() / (num_classes * counts)
    return weights / weights.mean()
