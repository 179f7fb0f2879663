#!/usr/bin/env bash
# A better MLP than the notebook's, found honestly (REPRODUCTION.md): the packaged study
# better-mlp (successive halving, one seed as the notebook ran, capped by the notebook's
# compute, 2.183e14 training FLOPs), then the selected configuration retrained on all 60,000
# training images with 3 fresh seeds (1, 2, 3: the search used seed 0). Resumable: run it
# again to finish what a kill or a session's end interrupted.
set -euo pipefail
cd "$(dirname "$0")"
python -m flaxmnist.sweep better-mlp --seeds 1 --budget 2.183e14 --out search 2>&1 \
  | tee search.log
python -m flaxmnist.evaluate search --refit --seeds 3 --first-seed 1 2>&1 | tee retrain.log
