"""Build networks by timm name. Weights are never downloaded: ``pretrained`` is always False."""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from brainmri.errors import ModelBundleError


def create_model(arch: str, *, num_classes: int, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Create ``arch`` from timm with random initialisation.

    ``None`` keyword arguments are dropped so that CLI defaults never override a model's own
    defaults (the timm factory habit). Asking for pretrained weights is an error: these
    machines have no model hub and the project trains its own weights.
    """
    if kwargs.pop("pretrained", False):
        raise ModelBundleError("pretrained weights are never downloaded; train with brainmri train")
    if not timm.is_model(arch):
        raise ModelBundleError(f"unknown architecture {arch!r}; use any timm model name")
    extra = {key: value for key, value in kwargs.items() if value is not None}
    return timm.create_model(
        arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **extra
    )


def cam_target_layer(model: nn.Module) -> nn.Module:
    """The output of the network's last feature stage (e.g. ``layer4`` of a ResNet).

    That is the last *block output* - after the residual addition and activation - which is
    what Grad-CAM should look at, not the last convolution inside the block.
    """
    feature_info = getattr(model, "feature_info", None)
    if feature_info:
        name = feature_info[-1]["module"]
        return model.get_submodule(name)
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise ModelBundleError("model has no convolutional stage for Grad-CAM")
    return convs[-1]


def count_hooks(model: nn.Module) -> int:
    """Forward/backward hooks currently registered anywhere in ``model`` (leak checks)."""
    total = 0
    for module in model.modules():
        total += len(module._forward_hooks) + len(module._forward_pre_hooks)
        total += len(module._backward_hooks) + len(getattr(module, "_backward_pre_hooks", {}))
    return total


def to_inference(
    model: nn.Module, device: torch.device, *, channels_last: bool = True
) -> nn.Module:
    model = model.to(device).eval()
    if channels_last and device.type != "mps":
        model = model.to(memory_format=torch.channels_last)
    for param in model.parameters():
        param.requires_grad_(False)
    return model
