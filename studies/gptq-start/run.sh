#!/usr/bin/env bash
# Does starting learned rounding from GPTQ (ReconConfig(weight_start="gptq")) beat round to nearest at 4-bit
# weights? adpdm and qdiffusion at W4A8 on embedded:mnist, calibration draws 1-2 (DRAWS=3,4 adds), 128 samples of
# validation noise (seed 7), PSNR against FP (no Inception); the two starts side by side, one thread each.
# The option was deleted after this study lost: run it at commit 220a43f (or f38ed52, see the end).
# Usage: bash studies/gptq-start/run.sh [PRESETS] (default w4a8)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/gptq-start
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
COMMON=(--models embedded:mnist --methods adpdm,qdiffusion --presets "${1:-w4a8}" --draw-seeds "${DRAWS:-1,2}" --seed 7
        --num-samples 128 --eval '{"inception": false}' --out "$OUT" --resume)
[ -n "${NAME:-}" ] || .venv/bin/adpdm bench --name nearest "${COMMON[@]}" >>"$OUT/results/nearest.log" 2>&1 &
.venv/bin/adpdm bench --name "${NAME:-gptq}" --recon '{"weight_start": "gptq"}' "${COMMON[@]}" >>"$OUT/results/${NAME:-gptq}.log" 2>&1 &
wait
# The offsets SignRound starts from: "edge" runs (results gptq.*) were made at commit f38ed52, which put them at
# +-0.499 next to the decision boundary; NAME=gptq_mid runs the current code (the middle of the offsets that
# keep GPTQ's choice).
