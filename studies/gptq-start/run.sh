#!/usr/bin/env bash
# Does starting learned rounding from GPTQ (ReconConfig(weight_start="gptq")) beat round to nearest at 4-bit
# weights? adpdm and qdiffusion at W4A8 and W4A6 on embedded:mnist, calibration draws 1-2, 128 samples of
# validation noise (seed 7), PSNR against FP (no Inception); the two starts side by side, one thread each.
# Usage: bash studies/gptq-start/run.sh [PRESETS] (default w4a8)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/gptq-start
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
COMMON=(--models embedded:mnist --methods adpdm,qdiffusion --presets "${1:-w4a8}" --draw-seeds 1,2 --seed 7
        --num-samples 128 --eval '{"inception": false}' --out "$OUT" --resume)
.venv/bin/adpdm bench --name nearest "${COMMON[@]}" >>"$OUT/results/nearest.log" 2>&1 &
.venv/bin/adpdm bench --name gptq --recon '{"weight_start": "gptq"}' "${COMMON[@]}" >>"$OUT/results/gptq.log" 2>&1 &
wait
