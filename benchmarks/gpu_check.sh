#!/usr/bin/env bash
# The GPU checks of issue 7 as one `device` call (the machine starts bare and cannot reach PyPI):
# install the wheels that benchmarks/gpu_wheels.sh fetched into .whl/, then measure SAC iterations/s
# on HalfCheetah eager, compiled and CUDA-graphed (benchmarks/gpu_sac.py --write). What comes back
# in $OUT: the log, docs/results.md with the new section, and the runs' metrics.
#   here:   bash benchmarks/gpu_wheels.sh
#   device: run command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 590
# Extra arguments go to gpu_sac.py (e.g. --steps 20000 --modes graphs).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 MUJOCO_GL=egl
nvidia-smi -L
python3 -c "import torch, lightning, torchrl, gymnasium, mujoco; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'lightning', lightning.__version__, 'torchrl', torchrl.__version__)"
timeout 540 python3 benchmarks/gpu_sac.py --write "$@" 2>&1 | tee "$OUT/gpu_sac.log"
status=${PIPESTATUS[0]}
cp docs/results.md "$OUT/results.md"
tar czf "$OUT/gpu_sac_runs.tgz" runs/benchmark/gpu_sac/*/run/metrics.csv runs/benchmark/gpu_sac/*/run.log 2>/dev/null
exit "$status"
