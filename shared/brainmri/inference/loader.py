"""Build an inference engine from settings (the CLI and the worker share this)."""

from __future__ import annotations

from pathlib import Path

from brainmri.config import Settings
from brainmri.imaging.dicom import SliceSelection
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.sandbox import DecodeSandbox
from brainmri.inference.engine import InferenceEngine
from brainmri.models.bundle import ModelBundle, load_bundle


def dicom_selection(settings: Settings) -> SliceSelection:
    return SliceSelection(mode=settings.dicom_slice_mode, k=settings.dicom_middle_k)


def engine_from_settings(
    settings: Settings,
    *,
    model_dir: Path | None = None,
    backend: str | None = None,
    device: str | None = None,
) -> InferenceEngine:
    """Load ``model_dir`` (default: the configured or shipped bundle) into an engine."""
    return engine_for_bundle(
        settings,
        load_bundle(model_dir or settings.resolved_model_dir),
        backend=backend,
        device=device,
    )


def engine_for_bundle(
    settings: Settings,
    bundle: ModelBundle,
    *,
    backend: str | None = None,
    device: str | None = None,
    sandbox: DecodeSandbox | None = None,
) -> InferenceEngine:
    """``sandbox``: decode there (job workers); None decodes in this process (the CLI, on a
    user's own files)."""
    return InferenceEngine(
        bundle,
        backend=backend or settings.inference_backend,
        device=device or settings.device,
        onnx_cache_dir=settings.data_dir / "onnx-cache",
        batch_size=settings.inference_batch_size,
        decode_workers=settings.decode_workers,
        limits=InputLimits.from_settings(settings),
        dicom_selection=dicom_selection(settings),
        sandbox=sandbox,
    )
