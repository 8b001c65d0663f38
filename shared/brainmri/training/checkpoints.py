"""Resume checkpoints (``checkpoints/last.pt``): everything a stopped run needs to continue as if
it had never stopped, saved as tensors and plain values so it loads with ``weights_only=True``
(a checkpoint from elsewhere cannot run code on load)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brainmri.errors import BrainMRIError
from brainmri.training.ema import WeightAverage
from brainmri.training.mixing import BatchMixer
from brainmri.training.recipes import TrainConfig

# Settings a resumed run must share with the checkpoint: the weights only fit these.
MUST_MATCH = ("arch", "img_size", "in_chans", "resize", "crop", "ema_decay")


@dataclass(slots=True)
class RunParts:
    """The live objects of a run whose state a checkpoint carries."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # LambdaLR over a WarmupCosine; its state holds the (budgeted) horizon
    mixer: BatchMixer
    loader_generator: torch.Generator
    ema: WeightAverage | None = None
    # With fp16 on CUDA: the loss scale (a fresh scaler skips steps while it re-learns it).
    scaler: torch.amp.GradScaler | None = None


def save_checkpoint(
    path: Path, parts: RunParts, state: dict[str, Any], config: TrainConfig
) -> None:
    """Write atomically (staging file, then rename): a crash mid-write keeps the last one."""
    payload = {
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "state": state,
        "mix_counts": dict(parts.mixer.counts),
        "torch_rng": torch.get_rng_state(),
        # The CUDA generators (dropout, augmentation on the device), when CUDA is in use.
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "loader_rng": parts.loader_generator.get_state(),
        "config": config.as_dict(),
    }
    staging = path.with_suffix(".tmp")
    torch.save(payload, staging)
    staging.replace(path)


def load_checkpoint(path: Path, parts: RunParts, config: TrainConfig) -> dict[str, Any]:
    """Restore ``parts`` from ``path``; returns the loop state. Refuses a checkpoint whose
    architecture or input settings differ from ``config`` (``resume_mismatch``)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved = TrainConfig.from_dict(payload["config"])
    for key in MUST_MATCH:
        if getattr(saved, key) != getattr(config, key):
            raise BrainMRIError(
                f"cannot resume: checkpoint has {key}={getattr(saved, key)!r}",
                code="resume_mismatch",
            )
    parts.model.load_state_dict(payload["model"])
    parts.optimizer.load_state_dict(payload["optimizer"])
    parts.scheduler.load_state_dict(payload["scheduler"])
    if parts.ema is not None:
        parts.ema.load_state_dict(payload["ema"])
    parts.mixer.counts.update(payload["mix_counts"])
    torch.set_rng_state(payload["torch_rng"])
    # Checkpoints written before these were saved lack them; a CPU resume of a CUDA run
    # cannot use the CUDA generators.
    if payload.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    if parts.scaler is not None and payload.get("scaler"):
        parts.scaler.load_state_dict(payload["scaler"])
    parts.loader_generator.set_state(payload["loader_rng"])
    return payload["state"]
