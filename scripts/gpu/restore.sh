#!/usr/bin/env bash
# Undo scripts/gpu/prepare.sh's move: the default model goes back from .gpu-hold/ to its folder.
# Research/triage only - not a medical device.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=shared/brainmri/assets/default_model/model.safetensors
if [ -f ".gpu-hold/$(basename "$model")" ]; then
  mv ".gpu-hold/$(basename "$model")" "$model"
  rmdir .gpu-hold 2>/dev/null || true
fi
[ -f "$model" ] || { echo "missing $model: git checkout -- $model" >&2; exit 1; }
git status --short -- "$model"
echo "restored $model"
