"""Export a bundle's network to ONNX with a dynamic batch dimension."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import torch

from brainmri.models.bundle import ModelBundle

OPSET = 18


def export_onnx(bundle: ModelBundle, path: Path) -> Path:
    """Write ``path`` atomically from the bundle's fp32 weights.

    The graph has one input ``input`` (N, C, S, S) and one output ``logits`` (N, K).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = bundle.build_model().float().eval()
    size = bundle.metadata.preprocess.img_size
    example = torch.zeros(2, bundle.metadata.preprocess.in_chans, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    handle, staging = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(handle)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its progress
            torch.onnx.export(
                model,
                (example,),
                staging,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: batch}},
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
            )
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return path


def cached_onnx_path(bundle: ModelBundle, cache_dir: Path | None = None) -> Path:
    """Export once per set of weights into a cache folder keyed by the weights' sha256."""
    root = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "brainmri"
    path = Path(root) / "onnx" / f"{bundle.metadata.weights_sha256 or bundle.version}.onnx"
    if not path.exists():
        export_onnx(bundle, path)
    return path
