"""Interchangeable ways of turning a preprocessed batch into logits.

* ``eager``: the PyTorch module in fp32 (the reference all others are checked against).
* ``bf16``: the same module under bf16 autocast, where the device supports it natively.
* ``onnx``: ONNX Runtime on a graph exported from the same weights.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from brainmri.devices import bf16_supported
from brainmri.errors import ConfigurationError
from brainmri.models.factory import to_inference

log = logging.getLogger(__name__)


class LogitsBackend(Protocol):
    name: str

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) float32 on CPU -> (N, K) float32 logits on CPU."""
        ...


class EagerBackend:
    """A PyTorch module, optionally under bf16 autocast."""

    def __init__(self, model: nn.Module, device: torch.device, *, bf16: bool = False) -> None:
        if bf16 and not bf16_supported(device):
            raise ConfigurationError(
                f"bf16 is not supported natively on {device}; use the eager or onnx backend"
            )
        self.name = "bf16" if bf16 else "eager"
        self.device = device
        self.model = to_inference(model, device)
        self._autocast = torch.bfloat16 if bf16 else None
        # A module is not safe to call from several threads at once on every device.
        self._lock = threading.Lock()

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        if self.device.type != "mps":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with self._lock, torch.inference_mode():
            if self._autocast is not None:
                with torch.autocast(device_type=self.device.type, dtype=self._autocast):
                    out = self.model(batch)
            else:
                out = self.model(batch)
        return out.float().cpu()


class OnnxBackend:
    """ONNX Runtime session over an exported graph (CUDA provider when present)."""

    name = "onnx"

    def __init__(self, onnx_path: Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers = [
            provider
            for provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if provider in ort.get_available_providers()
        ]
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self._input = self.session.get_inputs()[0].name

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session.run(None, {self._input: array})
        return torch.from_numpy(out)
