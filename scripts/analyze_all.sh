#!/usr/bin/env bash
# Sensitivity analysis (`adpdm analyze`) of the embedded models at W8A8, W6A6 and W4A8.
# Usage: bash scripts/analyze_all.sh [NUM_SAMPLES] [THREADS]; MODELS (default "mnist mnist-cond mnist-dit") and
# PRESETS (default "w8a8 w6a6 w4a8") choose the rows, e.g. MODELS=mnist-dit PRESETS="w8a8 w8a6".
# Defaults: 8 FP trajectories of 20 DDIM steps (seed 1), 1 torch thread (the fastest on a shared
# 2-core machine); writes benchmarks/results/analyze/<model>_<preset>/ (analysis.json, heatmap.png,
# ranges.png, stdout.txt with the table and the --suggest 0.05 layers) and times.txt (wall seconds). The budget
# is in checkpoint bytes, or in bit-operations where the weights are 8-bit already (nothing to gain in bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
NUM_SAMPLES=${1:-8}
THREADS=${2:-1}
ROOT=benchmarks/results/analyze
mkdir -p "$ROOT"
for model in ${MODELS:-mnist mnist-cond mnist-dit}; do
  for preset in ${PRESETS:-w8a8 w6a6 w4a8}; do
    out="$ROOT/${model}_${preset}"
    by=bytes; [[ $preset == w8* ]] && by=bops
    start=$(date +%s.%N)
    .venv/bin/adpdm analyze --model "embedded:$model" --preset "$preset" --steps 20 --num-samples "$NUM_SAMPLES" \
      --seed 1 --suggest 0.05 --suggest-by "$by" --top 10 --threads "$THREADS" --out "$out" > "$ROOT/${model}_${preset}.txt"
    mv "$ROOT/${model}_${preset}.txt" "$out/stdout.txt"
    printf '%s %s %.1f\n' "$model" "$preset" "$(echo "$(date +%s.%N) - $start" | bc)" | tee -a "$ROOT/times.txt"
  done
done
