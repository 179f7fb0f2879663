#!/usr/bin/env bash
# flaxmnist's tpe against Optuna trial by trial (BENCHMARKS.md, "Against Optuna, trial by
# trial"): the search benchmark's space, one training seed, the same wall-clock limit for
# both (SECONDS_LIMIT, default 600), counted from the process's start; repeat r seeds both
# samplers and the training with r. Interleaved, one at a time: nothing else may run.
#   optuna: benchmarks/optuna_sequential.py (study.optimize(n_jobs=1, timeout=...));
#   flaxmnist: python -m flaxmnist.sweep specs/tpe-r.toml --max-lanes 4, stopped by SIGINT at
#   the limit (what finished is kept; the round in flight is lost, as it would be).
# Usage: benchmarks/optuna_sequential.sh OUT_DIR [repeats]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; repeats=${2:-3}; limit=${SECONDS_LIMIT:-600}
mkdir -p "$out"
for ((r = 0; r < repeats; r++)); do
  if [[ ! -f $out/optuna-$r/summary.json ]]; then
    rm -rf "$out/optuna-$r"
    python benchmarks/optuna_sequential.py --seconds "$limit" --seed "$r" --out "$out/optuna-$r" \
      > "$out/optuna-$r.log" 2>&1
  fi
  if [[ ! -f $out/flaxmnist-$r.done ]]; then
    rm -rf "$out/flaxmnist-$r"
    timeout -s INT "$limit" python -m flaxmnist.sweep \
      reproduction/search-benchmark/specs/tpe-"$r".toml --seeds 1 --first-seed "$r" \
      --max-lanes 4 --quiet --out "$out/flaxmnist-$r" > "$out/flaxmnist-$r.log" 2>&1 || true
    touch "$out/flaxmnist-$r.done"
  fi
done
python benchmarks/optuna_sequential.py --summarize "$out" --seconds "$limit" | tee "$out/summary.txt"
