#!/usr/bin/env bash
# Runs ON the lent GPU machine, from the repository root of the copy sent there (see
# scripts/gpu/prepare.sh). Installs the carried wheels, checks the GPU and imports, then trains
# the plan's candidates side by side and leaves in $OUT what comes back: driver.log,
# summary.json, runs.tar.gz (every run's small files) and bundles.tar.part* (float16 bundles).
# Research/triage only - not a medical device.
set -o pipefail
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
started=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH="/tmp/site:$PWD/shared:$PWD/services/api:$PWD/services/worker:$PWD/services/trainer"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"
python3 -c "import torch, timm, torchvision, pydantic, brainmri.training.trainer, brainmri.cli.evaluate, brainmri.cli.export; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'timm', timm.__version__, 'torchvision', torchvision.__version__)" || exit 4
echo "setup $(( $(date +%s) - started )) s"
python3 scripts/train_candidates.py --plan .gpu/plan.json --pack .gpu/pack --runs /tmp/runs \
  --out "${OUT:?OUT is set by the device tool}" --deadline-minutes "${DEADLINE_MINUTES:-8.0}" \
  --poll-seconds 20 2>&1 | tee "$OUT/driver.log"
status=$?
echo "total $(( $(date +%s) - started )) s"
exit $status
