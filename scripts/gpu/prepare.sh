#!/usr/bin/env bash
# Prepare one call of a lent GPU machine (this workplace's `device` tool): data pack, the
# Python packages that machine lacks, the plan. Research/triage only - not a medical device.
#
#   scripts/gpu/prepare.sh            # build .gpu/ and .whl/ (both in .gitignore)
#   ... run: command "bash scripts/gpu/remote.sh", carry [".gpu", ".whl"], timeout_s 590
#   scripts/gpu/restore.sh            # put the default model back
#
# Why each step (see scripts/gpu/README.md): the working tree that travels is capped at 64 MiB,
# so the training data goes as a pack (letterboxed JPEGs at the trainer's cache size, about a
# third of the originals' bytes) and the shipped default model (22 MB, not needed there) moves
# out of the tree for the call; the machine has PyTorch but not pydantic, pydicom or this
# project's timm pin, which travel as wheels.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
SPLIT=${SPLIT:-runs/split-v2-seed42}
DATA=${DATA:-../shared/data/brain-tumor-mri}
IMG=${IMG:-224}
CACHE=$(python3 -c "print(round($IMG * 1.15))")

if [ ! -f "$SPLIT/train.csv" ]; then
  "$BIN/brainmri" dataset build --root "$DATA" --out "$SPLIT" --val-frac 0.15 --test-frac 0.15 --seed 42
fi
rm -rf .gpu && mkdir -p .gpu
"$BIN/brainmri" dataset pack "$SPLIT/train.csv" --out .gpu/pack --size "$CACHE" --quality 85
"$BIN/brainmri" dataset pack "$SPLIT/val.csv" --out .gpu/pack --size "$IMG" --quality 92
cp scripts/gpu/plan-default-model.json .gpu/plan.json

# The packages the GPU image lacks, at the versions this project's venv holds, for its Python 3.12.
rm -rf .whl && mkdir -p .whl
specs=$("$BIN/python" - <<'PY'
from importlib.metadata import version
names = ["pydantic", "pydantic_core", "pydantic-settings", "annotated-types", "typing-inspection",
         "python-dotenv", "typing_extensions", "captum", "pydicom", "timm"]
print(" ".join(f"{name}=={version(name)}" for name in names))
PY
)
# shellcheck disable=SC2086
"$BIN/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl $specs

# The device tool sends every file under shared/ (this project's package folder), ignored or not,
# so taking the model out of the git index is not enough (a call was refused as over 64 MiB on
# 2026-12-04): the file itself waits in .gpu-hold/ (ignored, never carried) until
# scripts/gpu/restore.sh puts it back.
model=shared/brainmri/assets/default_model/model.safetensors
if [ -f "$model" ]; then
  mkdir -p .gpu-hold && mv "$model" .gpu-hold/
fi
find shared -name __pycache__ -prune -exec rm -rf {} +

tree=$( (git ls-files; git ls-files --others --exclude-standard) | grep -v '^shared/' \
  | xargs -d '\n' du -cb 2>/dev/null | tail -1 | cut -f1)
package=$(du -sb shared | cut -f1)
carried=$(du -sb .gpu .whl | awk '{s += $1} END {print s}')
total=$((tree + package + carried))
echo "travels: $((total / 1048576)) MiB of 64 (tree $((tree / 1048576)), shared/ $((package / 1048576)), .gpu + .whl $((carried / 1048576)))"
[ "$total" -lt $((62 * 1048576)) ] || { echo "too large for one call; run scripts/gpu/restore.sh" >&2; exit 1; }
echo "ready; afterwards run scripts/gpu/restore.sh"
