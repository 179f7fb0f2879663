#!/usr/bin/env bash
# The GPU benchmark: the whole notebook grid at once on one NVIDIA GPU, beside a PyTorch loop.
# For a machine with jax (CUDA), flax, optax, numpy and torch preinstalled and no network:
# it runs flaxmnist from this source tree and installs nothing.
#   benchmarks/gpu.sh            # the measurement (BENCHMARKS.md, "GPU")
#   benchmarks/gpu.sh --quick    # a smoke test on 2,000 images, any machine
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import sys, jax, flax, optax; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__)"
PYTHONPATH=. python benchmarks/gpu.py "$@"
