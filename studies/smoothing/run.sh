#!/usr/bin/env bash
# Does input smoothing (QuantConfig.smoothing: per-channel factors moved into the weights, strength chosen per
# layer on the calibration rows) pay? adpdm and qdiffusion on embedded:mnist at W6A6, W8A6 and W4A8, with and
# without it, calibration draws 1-4, 128 samples of validation noise (seed 7), PSNR against FP (no Inception);
# one process per method, one thread each. The W4A8 rows without smoothing are those of studies/weight-groups
# (the same settings and noise).
# Usage: bash studies/smoothing/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/smoothing
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
COMMON=(--models embedded:mnist --draw-seeds "${DRAWS:-1,2,3,4}" --seed 7 --num-samples 128
        --eval '{"inception": false}' --out "$OUT" --resume)
for method in adpdm qdiffusion; do
  (
    .venv/bin/adpdm bench --name "plain_$method" --methods "$method" --presets w6a6,w8a6 "${COMMON[@]}"
    .venv/bin/adpdm bench --name "smooth_$method" --methods "$method" --presets w6a6,w8a6,w4a8 --smoothing \
      "${COMMON[@]}"
  ) >>"$OUT/results/$method.log" 2>&1 &
done
wait
