#!/usr/bin/env bash
# Undo the index change of scripts/gpu/prepare.sh: the default model is tracked again.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=shared/brainmri/assets/default_model/model.safetensors
git reset -q -- "$model"
sed -i "\#^/$model\$#d" .git/info/exclude
git status --short -- "$model"
echo "restored $model in the index"
