#!/usr/bin/env bash
# Running on many hosts (README, BENCHMARKS.md "Many processes"): the README's two-process
# localhost example, pasted as it stands, then the same study in one process with two CPU
# devices; wall times, and whether the two results files are equal byte for byte.
# Writes runs/lr-2p and runs/lr-1p under the current directory.
set -x
start=$(date +%s.%N)
python -m flaxmnist.sweep lr --out runs/lr-2p --cpu-devices 1 \
  --coordinator 127.0.0.1:4321 --num-processes 2 --process-id 0 &
python -m flaxmnist.sweep lr --out runs/lr-2p --cpu-devices 1 \
  --coordinator 127.0.0.1:4321 --num-processes 2 --process-id 1
wait
echo "TWO PROCESSES wall $(echo "$(date +%s.%N) - $start" | bc)"
start=$(date +%s.%N)
python -m flaxmnist.sweep lr --out runs/lr-1p
echo "ONE PROCESS wall $(echo "$(date +%s.%N) - $start" | bc)"
cmp runs/lr-2p/results.jsonl runs/lr-1p/results.jsonl && echo BIT-EQUAL
