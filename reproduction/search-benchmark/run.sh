#!/usr/bin/env bash
# The search benchmark (REPRODUCTION.md, "A search benchmark that can tell strategies
# apart"): one space of ten dimensions (specs.py), five strategies, one training seed per
# run; repeat r uses sampler seed r and training seed r.
#   - a tenth of the notebook's compute (--budget 2.183e13): every strategy, 5 repeats;
#   - the notebook's compute (2.183e14): quasi-random and BOHB, 3 repeats.
# Every run resumes: run this script again to finish what a kill or a session's end
# interrupted (a run whose log is complete is skipped; a log's last line is its wall time,
# this script's clock, compile included, on whatever else the machine was doing). Commit
# only finished runs (a log with its "results:" line): a search's checkpoint is not
# committed (.gitignore), and a run directory without it would resume as if finished.
# Usage: run.sh [tenth|notebook|report]   (default: tenth, then notebook, then report)
set -euo pipefail
cd "$(dirname "$0")"
python specs.py
STRATEGIES=(quasi-random halving hyperband tpe bohb)

one() {  # one <budget-label> <budget> <strategy> <repeat>
  local label=$1 budget=$2 strategy=$3 r=$4
  local log="out/$label/$strategy-$r.log"
  mkdir -p "out/$label"
  if grep -q '^results:' "$log" 2>/dev/null; then echo "$label/$strategy-$r already done"; return; fi
  local start=$SECONDS lanes=()
  [[ $strategy == tpe ]] && lanes=(--max-lanes 4)
  # Appended: a resumed run's log keeps what its earlier attempts printed.
  [[ -s $log ]] && echo "--- resumed $(date -u +%FT%TZ)" >> "$log"
  python -m flaxmnist.sweep "specs/$strategy-$r.toml" --seeds 1 --first-seed "$r" \
    --budget "$budget" --out "out/$label/$strategy-$r" --quiet "${lanes[@]}" >> "$log" 2>&1 \
    || { echo "$label/$strategy-$r failed: $log"; exit 1; }
  echo "wall: $((SECONDS - start)) s (this script's clock, compile included)" >> "$log"
  echo "$label/$strategy-$r done"
}

tenth() {
  for r in 0 1 2 3 4; do
    for strategy in "${STRATEGIES[@]}"; do one tenth 2.183e13 "$strategy" "$r"; done
  done
}

notebook() {
  for r in 0 1 2; do
    for strategy in quasi-random bohb; do one notebook 2.183e14 "$strategy" "$r"; done
  done
}

report() {
  for label in tenth notebook; do
    [[ -d out/$label ]] || continue
    args=()
    for strategy in "${STRATEGIES[@]}"; do
      for dir in out/$label/$strategy-*/; do
        [[ -f $dir/results.jsonl ]] && args+=("$strategy=${dir%/}")
      done
    done
    python -m flaxmnist.report --compare "compare-$label.png" "${args[@]}" | tee "compare-$label.txt"
  done
  # Hyperband's picture of one run: its brackets over the study's epochs, and lane refill.
  python -c 'from flaxmnist.report import load_results, plot_brackets
from flaxmnist.report.style import styled
with styled(): plot_brackets(load_results("out/notebook/bohb-0"), "brackets-notebook-bohb-0.png")'
  echo "wrote brackets-notebook-bohb-0.png"
}

case "${1:-all}" in
  tenth) tenth ;;
  notebook) notebook ;;
  report) report ;;
  all) tenth; notebook; report ;;
  *) echo "usage: $0 [tenth|notebook|report]" >&2; exit 2 ;;
esac
