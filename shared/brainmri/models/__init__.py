"""Model factory (any timm CNN, never pretrained) and model bundles (safetensors + JSON)."""
