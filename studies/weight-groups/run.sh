#!/usr/bin/env bash
# Do grouped weight scales (one scale per 32 or 64 input channels, presets w4g32a8 / w4g64a8) beat one scale per
# output channel at 4-bit weights? adpdm and qdiffusion on embedded:mnist, calibration draws 1-4, 128 samples of
# validation noise (seed 7), PSNR against FP (no Inception); one process per method, one thread each.
# Usage: bash studies/weight-groups/run.sh [PRESETS] (default w4a8,w4g64a8,w4g32a8)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/weight-groups
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
COMMON=(--models embedded:mnist --presets "${1:-w4a8,w4g64a8,w4g32a8}" --draw-seeds "${DRAWS:-1,2,3,4}" --seed 7
        --num-samples 128 --eval '{"inception": false}' --out "$OUT" --resume)
for method in adpdm qdiffusion; do
  .venv/bin/adpdm bench --name "$method" --methods "$method" "${COMMON[@]}" >>"$OUT/results/$method.log" 2>&1 &
done
wait
