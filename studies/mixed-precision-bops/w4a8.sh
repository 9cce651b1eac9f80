#!/usr/bin/env bash
# Mixed precision by bit-operations at W4A8: adpdm and qdiffusion on embedded:mnist with the layers that
# `adpdm analyze --suggest-by bops` raises to 8 bits (+10% and +25% of the preset's bit-operations), calibration
# draws 1-2, 128 samples of validation noise (seed 7), PSNR against FP (no Inception); one process per method,
# one thread each. The uniform W4A8 rows are those of studies/weight-groups (same settings and noise).
# Needs the analysis of scripts/analyze_all.sh (benchmarks/results/analyze/mnist_w4a8/analysis.json).
# Usage: bash studies/mixed-precision-bops/w4a8.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/mixed-precision-bops
ANALYSIS=${ANALYSIS:-benchmarks/results/analyze/mnist_w4a8/analysis.json}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
for method in adpdm qdiffusion; do
  (
    for b in 10% 25%; do
      bits=$(PYTHONPATH=. .venv/bin/python "$OUT/suggest.py" "$ANALYSIS" "$b" 2>>"$OUT/results/suggest_w4a8.txt")
      echo "$method $b: $bits" >>"$OUT/results/suggest_w4a8.txt"
      .venv/bin/adpdm bench --name "w4a8_bops${b%\%}_$method" --models embedded:mnist --methods "$method" \
        --presets w4a8 --draw-seeds 1,2 --seed 7 --num-samples 128 --eval '{"inception": false}' \
        --layer-bits "$bits" --out "$OUT" --resume
    done
  ) >>"$OUT/results/w4a8_$method.log" 2>&1 &
done
wait
