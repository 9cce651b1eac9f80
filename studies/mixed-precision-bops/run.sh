#!/usr/bin/env bash
# Mixed precision by bit-operations on validation noise: adpdm (and qdiffusion) at W6A6 on embedded:mnist with
# the layers that `adpdm analyze --suggest-by bops` raises to 8 bits, against the uniform preset, calibration
# draws 1-2, 256 samples of validation noise (seed 7), PSNR against FP and background speckle (no Inception).
# Needs the analysis of scripts/analyze_all.sh (benchmarks/results/analyze/mnist_w6a6/analysis.json).
# Usage: bash studies/mixed-precision-bops/run.sh [BUDGET ...] (default 10% 25%); METHODS=adpdm,qdiffusion
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/mixed-precision-bops
ANALYSIS=${ANALYSIS:-benchmarks/results/analyze/mnist_w6a6/analysis.json}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
COMMON=(--models embedded:mnist --methods "${METHODS:-adpdm}" --presets w6a6 --draw-seeds 1,2 --seed 7
        --num-samples 256 --eval '{"inception": false}' --out "$OUT" --resume)
.venv/bin/adpdm bench --name uniform "${COMMON[@]}" >>"$OUT/results/uniform.log" 2>&1
for budget in "${@:-10% 25%}"; do
  for b in $budget; do
    bits=$(PYTHONPATH=. .venv/bin/python "$OUT/suggest.py" "$ANALYSIS" "$b" 2>>"$OUT/results/suggest.txt")
    echo "$b: $bits" >>"$OUT/results/suggest.txt"
    .venv/bin/adpdm bench --name "bops${b%\%}" --layer-bits "$bits" "${COMMON[@]}" >>"$OUT/results/bops${b%\%}.log" 2>&1
  done
done
