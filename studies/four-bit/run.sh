#!/usr/bin/env bash
# Four-bit weights with both kept levers: do grouped weight scales (w4g64) and input smoothing stack at W4A8, and
# what does smoothing give at W4A6? (Draw 1 of w4g64a6 with smoothing ran too before the set was cut to fit the
# CPU time; its row stays in the results file.) adpdm and qdiffusion on embedded:mnist, calibration draws 1-4, 128 samples of
# validation noise (seed 7), PSNR against FP (no Inception); one process per method, one thread each. The W4A8
# rows without smoothing are those of studies/weight-groups, w4a8 with smoothing those of studies/smoothing
# (the same settings and noise).
# Usage: bash studies/four-bit/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/four-bit
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
COMMON=(--models embedded:mnist --draw-seeds "${DRAWS:-1,2,3,4}" --seed 7 --num-samples 128
        --eval '{"inception": false}' --out "$OUT" --resume)
mkdir -p "$OUT/results"
for method in adpdm qdiffusion; do
  (
    .venv/bin/adpdm bench --name "smooth_$method" --methods "$method" --presets w4g64a8,w4a6 --smoothing \
      "${COMMON[@]}"
    .venv/bin/adpdm bench --name "plain_$method" --methods "$method" --presets w4a6 "${COMMON[@]}"
  ) >>"$OUT/results/$method.log" 2>&1 &
done
wait
