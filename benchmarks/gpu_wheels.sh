#!/usr/bin/env bash
# Fetch, on this machine, the wheels that a GPU machine lent through the `device` tool lacks: its
# image holds Python 3.12 with CUDA PyTorch, Lightning, NumPy, Matplotlib, ImageIO and PyYAML but not
# TorchRL, TensorDict, Gymnasium, MuJoCo or jsonargparse, and it cannot reach PyPI. The wheels land
# in .whl/ (git-ignored, about 46 MiB), which benchmarks/gpu_check.sh installs there:
#   bash benchmarks/gpu_wheels.sh            # here, once (needs PyPI)
#   device run: bash benchmarks/gpu_check.sh, carry [".whl"]
# The versions are those this project's test suite ran with (pip freeze, 2026-12). PYTHON_VERSION=3.11
# WHEELS=/tmp/w fetches the same set for this machine's Python elsewhere (a dry run in a bare venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
EXCLUDE=$(git rev-parse --git-path info/exclude)
grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >> "$EXCLUDE"
WHEELS=${WHEELS:-.whl}
PACKAGES=(
  torchrl==0.14.1 tensordict==0.14.3 hoptorch==0.1.4 pyvers==0.2.3 orjson==3.13.0 importlib_metadata==10.2.0
  gymnasium==1.4.0 farama-notifications==0.0.6 box2d==2.3.10 pygame-ce==2.5.8
  mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 websockets==17.4 glfw==2.11.0 pyopengl==3.1.10
  jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0 omegaconf==2.4.0
)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$WHEELS" "${PACKAGES[@]}"
du -sh "$WHEELS"
