"""Precision choice per CPU: bf16 only where the CPU has bf16 instructions.

The CPU's feature flags are the one input a test cannot change on real hardware, so these tests
replace the flag reader; everything downstream (oneDNN's own check, autocast choice, the
inference backend) is the real code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from brainmri import devices
from brainmri.errors import ConfigurationError
from brainmri.inference.engine import InferenceEngine
from brainmri.models.bundle import load_bundle

CPU = torch.device("cpu")
# An Ice Lake Xeon: AVX-512 with VNNI, no AVX512-BF16, no AMX. oneDNN emulates bf16 there.
ICE_LAKE = frozenset({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"})
ONEDNN_BF16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@pytest.fixture
def cpu_flags(monkeypatch: pytest.MonkeyPatch):
    def use(flags: frozenset[str]) -> None:
        monkeypatch.setattr(devices, "_cpu_flags", lambda: flags)

    return use


def test_emulated_bf16_is_refused_and_auto_stays_fp32(cpu_flags, random_bundle_dir: Path) -> None:
    cpu_flags(ICE_LAKE)
    assert devices.bf16_supported(CPU) is False
    with pytest.raises(ConfigurationError, match="emulated"):
        devices.autocast_dtype(CPU, "bf16")
    assert devices.autocast_dtype(CPU, "auto", purpose="train") is None
    assert devices.autocast_dtype(CPU, "auto", purpose="inference") is None
    with pytest.raises(ConfigurationError, match="not supported natively"):
        InferenceEngine(load_bundle(random_bundle_dir), backend="bf16", device="cpu")


@pytest.mark.skipif(not ONEDNN_BF16, reason="this PyTorch build has no CPU bf16 kernels")
def test_native_bf16_trains_in_bf16_and_infers_in_bf16_only_with_amx(cpu_flags) -> None:
    cpu_flags(ICE_LAKE | {"avx512_bf16"})
    assert devices.bf16_supported(CPU) is True
    assert devices.autocast_dtype(CPU, "auto", purpose="train") is torch.bfloat16
    assert devices.autocast_dtype(CPU, "auto", purpose="inference") is None  # fp32 records
    assert devices.autocast_dtype(CPU, "bf16") is torch.bfloat16
    cpu_flags(ICE_LAKE | {"avx512_bf16", "amx_bf16", "amx_tile"})
    assert devices.autocast_dtype(CPU, "auto", purpose="inference") is torch.bfloat16


def test_fp32_is_always_fp32(cpu_flags) -> None:
    for flags in (frozenset(), ICE_LAKE, ICE_LAKE | {"amx_bf16"}):
        cpu_flags(flags)
        assert devices.autocast_dtype(CPU, "fp32") is None
