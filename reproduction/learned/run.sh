#!/usr/bin/env bash
# Learned against blind search (REPRODUCTION.md): one search space (the strategies'
# comparison's), a tenth of the notebook's compute each (--budget 2.183e13 training FLOPs),
# seven strategies (tpe-rounds-of-6: tpe in calls of 6 lanes, --max-lanes 6), five repeats: repeat r uses sampler seed r (specs/*-r.toml) and trains with
# seed r (--first-seed r). Every run resumes: run this script again to finish what a kill or
# a session's end interrupted (a run whose log is complete is skipped; a log's last line is
# the run's wall time).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p out
STRATEGIES=(quasi-random halving tpe gp cmaes tpe-halving tpe-rounds-of-6)
for r in 0 1 2 3 4; do
  for strategy in "${STRATEGIES[@]}"; do
    log="out/$strategy-$r.log"
    if grep -q '^results:' "$log" 2>/dev/null; then echo "$strategy-$r already done"; continue; fi
    start=$SECONDS
    lanes=(); [[ $strategy == tpe-rounds-of-6 ]] && lanes=(--max-lanes 6)
    python -m flaxmnist.sweep "specs/$strategy-$r.toml" --seeds 1 --first-seed "$r" \
      --budget 2.183e13 --out "out/$strategy-$r" --quiet "${lanes[@]}" > "$log" 2>&1 \
      || { echo "$strategy-$r failed: $log"; exit 1; }
    echo "wall: $((SECONDS - start)) s (this script's clock, compile included)" >> "$log"
    echo "$strategy-$r done"
  done
done
args=()
for strategy in "${STRATEGIES[@]}"; do
  for r in 0 1 2 3 4; do args+=("$strategy=out/$strategy-$r"); done
done
python -m flaxmnist.report --compare compare.png "${args[@]}" | tee compare.txt
