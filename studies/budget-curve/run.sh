#!/usr/bin/env bash
# How much of the gap to full precision is the reconstruction budget? adpdm and qdiffusion on embedded:mnist at
# W4A8 and W6A6, calibration draws 1-2, 128 samples of validation noise (seed 7), PSNR against FP; one process
# per method, one thread each.
#   iterations: 50 and 200 per unit (W4A8 draw 1 also 1000), 32 calibration trajectories (the default);
#   rows: 128 calibration trajectories (8x the benchmark's 16) at 50 iterations.
# Usage: bash studies/budget-curve/run.sh   (finished runs are kept: --resume)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/budget-curve
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
COMMON=(--models embedded:mnist --seed 7 --num-samples 128 --eval '{"inception": false}' --out "$OUT" --resume)
for method in adpdm qdiffusion; do
  (
    for iters in 50 200; do
      .venv/bin/adpdm bench --name "iters${iters}_$method" --methods "$method" --presets w4a8,w6a6 --draw-seeds 1,2 \
        --iters "$iters" "${COMMON[@]}"
    done
    .venv/bin/adpdm bench --name "iters1000_$method" --methods "$method" --presets w4a8 --draw-seeds 1 --iters 1000 \
      "${COMMON[@]}"
    .venv/bin/adpdm bench --name "rows128_$method" --methods "$method" --presets w4a8,w6a6 --draw-seeds 1,2 \
      --iters 50 --calib '{"num_samples": 128}' "${COMMON[@]}"
  ) >>"$OUT/results/$method.log" 2>&1 &
done
wait
