"""Device selection for workers and the trainer (CUDA, Apple MPS or CPU)."""

from __future__ import annotations

import logging
import os

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
    """The original project's Apple-Silicon advice, applied automatically on MPS.

    Letting the MPS allocator use all unified memory avoids spurious OOMs with the default
    watermark, and data loading in worker processes is slower than in-process on MPS.
    """
    if device.type == "mps":
        os.environ.setdefault("PYTORCH_MPS_HIGH_WATERMARK_RATIO", "0.0")
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")


def loader_workers(device: torch.device, requested: int) -> int:
    """DataLoader worker processes: 0 on MPS (the original's tip), else what was asked."""
    return 0 if device.type == "mps" else requested


def cpu_has_amx() -> bool:
    """AMX tiles make bf16 matmuls several times faster than fp32 on Intel CPUs.

    Without them (AVX-512 BF16 alone) bf16 autocast measured *slower* than fp32 here, so
    ``auto`` precision only picks bf16 on CPUs that have AMX.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            return any("amx_bf16" in line for line in handle if line.startswith("flags"))
    except OSError:
        return False


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``auto``, ``fp32`` or ``bf16``) on ``device``."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        if not bf16_supported(device):
            raise ConfigurationError(f"bf16 is not supported on {device}")
        return torch.bfloat16
    if precision != "auto":
        raise ConfigurationError(f"unknown precision {precision!r}; use auto, fp32 or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_amx() and bf16_supported(device):
        return torch.bfloat16
    return None


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively (not emulated) on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return device.type == "mps"
