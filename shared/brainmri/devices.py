"""Device selection for workers and the trainer (CUDA, Apple MPS or CPU)."""

from __future__ import annotations

import functools
import logging
import os
from typing import Literal

import torch

from brainmri.errors import ConfigurationError

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit choice must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("BRAINMRI_DEVICE=cuda but no CUDA device is available")
    if name == "mps" and not mps_available():
        raise ConfigurationError("BRAINMRI_DEVICE=mps but the MPS backend is not available")
    if name not in {"cpu", "cuda", "mps"}:
        raise ConfigurationError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def apply_device_tips(device: torch.device) -> None:
    """Per-backend settings, applied automatically.

    MPS (the original project's Apple-Silicon advice): letting the allocator use all unified
    memory avoids spurious OOMs with the default watermark, and data loading in worker
    processes is slower than in-process. CUDA: training batches have one or two shapes (the
    odd last batch), so letting cuDNN time its convolution algorithms once pays for itself.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "mps":
        os.environ.setdefault("PYTORCH_MPS_HIGH_WATERMARK_RATIO", "0.0")
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")


def loader_workers(device: torch.device, requested: int) -> int:
    """DataLoader worker processes: 0 on MPS (the original's tip), else what was asked."""
    return 0 if device.type == "mps" else requested


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (read once: they do not change while the process runs)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_amx() -> bool:
    """AMX tiles make bf16 matmuls several times faster than fp32 on Intel CPUs."""
    return "amx_bf16" in _cpu_flags()


def cpu_has_native_bf16() -> bool:
    """bf16 dot-product instructions (AVX512-BF16 or AMX), as opposed to emulated bf16.

    With AVX512-BF16 alone (no AMX), bf16 autocast still trained 1.8x faster than fp32 on
    the development CPU (resnet18 @160 and resnet34 @224; ``benchmarks/train.py``).
    """
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def autocast_dtype(
    device: torch.device, precision: str, *, purpose: Literal["train", "inference"] = "train"
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``auto``, ``fp32`` or ``bf16``) on ``device``.

    ``auto`` picks bf16 on CUDA and, for training, on any CPU with native bf16 instructions.
    For inference on CPUs without AMX it stays fp32 although bf16 is faster there too: model
    cards and evaluation records are computed in fp32 and must reproduce exactly; set the
    ``bf16`` backend explicitly to trade that for speed.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        if not bf16_supported(device):
            raise ConfigurationError(
                f"bf16 is not supported natively on {device} (it would be emulated, slower "
                "than fp32); use fp32"
            )
        return torch.bfloat16
    if precision != "auto":
        raise ConfigurationError(f"unknown precision {precision!r}; use auto, fp32 or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and bf16_supported(device):
        return torch.bfloat16 if purpose == "train" or cpu_has_amx() else None
    return None


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively (not emulated) on ``device``.

    On a CPU, oneDNN's own check is not enough: it also says yes on AVX-512 CPUs without bf16
    instructions, where it emulates bf16 - at 5 training images/s against 12 in fp32 on an Ice
    Lake Xeon (``benchmarks/README.md``). So the CPU must also list AVX512-BF16 or AMX.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return device.type == "mps"
