#!/bin/bash
# The golden spec at one horizon, both protocols, under one interpreter and one ISA cap:
#   tests/golden/tolerances/measure_run.sh PYTHON TAG ISA|max EPOCHS LIMIT OUTDIR
# (run from the repository root). Writes OUTDIR/TAG-ISA-eEPOCHS-nLIMIT-PROTOCOL/.
py=$1; tag=$2; isa=$3; epochs=$4; limit=$5; outdir=$6
for proto in holdout test; do
  out=$outdir/$tag-$isa-e$epochs-n$limit-$proto
  [ -f "$out/results.jsonl" ] && continue
  if [ "$isa" = max ]; then flags=""; else flags="--xla_cpu_max_isa=$isa"; fi
  XLA_FLAGS="$flags" "$py" -m flaxmnist.sweep tests/golden/golden.toml --epochs "$epochs" \
    --limit-train "$limit" --seeds 2 --validate-on "$proto" --cpu-devices 2 --no-compile-cache \
    --quiet --out "$out" > "$out.log" 2>&1
  echo "$tag $isa $epochs $limit $proto exit $?"
done
