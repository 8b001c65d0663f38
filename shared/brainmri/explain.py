"""Grad-CAM overlays with Captum.

Each call attaches Captum's hooks for the duration of one attribution and removes them; the
overlay is returned as PNG bytes at the input image's own size - no shared temp files, no hooks
left behind, any input size. The target layer is the last feature stage's block output.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from matplotlib import colormaps
from PIL import Image
from torch import nn

from brainmri.models.factory import cam_target_layer
from brainmri.preprocess import PreprocessConfig, content_box

OVERLAY_ALPHA = 0.45


@dataclass(frozen=True, slots=True)
class CamResult:
    heatmap: np.ndarray  # float32 (H, W) in [0, 1] at the input's size
    png: bytes  # RGB overlay of the heatmap on the input slice
    target_class: int


class GradCamExplainer:
    """Grad-CAM for one fp32 network; thread-safe (one attribution at a time)."""

    def __init__(self, model: nn.Module, preprocess: PreprocessConfig) -> None:
        self.model = model.float().eval()
        self.preprocess = preprocess
        self.layer = cam_target_layer(self.model)
        self._lock = threading.Lock()

    def explain(self, tensor: torch.Tensor, pixels: np.ndarray, target_class: int) -> CamResult:
        """Heatmap for ``target_class`` of the preprocessed ``tensor`` shown over ``pixels``."""
        device = next(self.model.parameters()).device
        inputs = tensor.unsqueeze(0).to(device).float().requires_grad_(True)
        with self._lock, torch.enable_grad():
            cam = LayerGradCam(self.model, self.layer).attribute(
                inputs, target=int(target_class), relu_attributions=True
            )
        heatmap = self._to_input_space(cam.detach().float().cpu(), pixels)
        return CamResult(
            heatmap=heatmap, png=overlay_png(pixels, heatmap), target_class=target_class
        )

    def _to_input_space(self, cam: torch.Tensor, pixels: np.ndarray) -> np.ndarray:
        """The CAM on the slice's own pixel grid; 0 outside the region the network saw."""
        size = self.preprocess.img_size
        square = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)
        box = content_box(pixels, self.preprocess)
        region = square[..., box.top : box.top + box.height, box.left : box.left + box.width]
        seen = box.source
        heat = np.zeros(pixels.shape[:2], dtype=np.float32)
        heat[seen.top : seen.top + seen.height, seen.left : seen.left + seen.width] = F.interpolate(
            region, size=(seen.height, seen.width), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        peak = float(heat.max())
        return (heat / peak).astype(np.float32) if peak > 0 else np.zeros_like(heat, np.float32)


def overlay_png(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> bytes:
    """Blend a jet-coloured heatmap over the grey slice and encode it as PNG."""
    grey = np.clip(pixels, 0.0, 1.0)[..., None].repeat(3, axis=-1)
    colour = colormaps["jet"](np.clip(heatmap, 0.0, 1.0))[..., :3]
    blended = (1.0 - alpha) * grey + alpha * colour
    image = Image.fromarray((blended * 255.0 + 0.5).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
