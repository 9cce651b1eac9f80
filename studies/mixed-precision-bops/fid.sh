#!/usr/bin/env bash
# FID against MNIST (2,000 test images, Inception) of adpdm at PRESET (default w6a6), uniform and with the +BUDGET
# bit-operation suggestion, on 1,000 samples of validation noise (seed 7), calibration draw 1; the two runs side
# by side, one thread each (about 20 minutes on the 2-core CPU). Needs the analysis of scripts/analyze_all.sh.
# Usage: [PRESET=w4a8] bash studies/mixed-precision-bops/fid.sh [BUDGET] (default 10%)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/mixed-precision-bops
PRESET=${PRESET:-w6a6}
ANALYSIS=${ANALYSIS:-benchmarks/results/analyze/mnist_$PRESET/analysis.json}
BUDGET=${1:-10%}
NAME=fid
[ "$PRESET" = w6a6 ] || NAME=fid_$PRESET
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
COMMON=(--models embedded:mnist --methods adpdm --presets "$PRESET" --draw-seeds 1 --seed 7 --num-samples 1000
        --out "$OUT" --resume)
bits=$(PYTHONPATH=. .venv/bin/python "$OUT/suggest.py" "$ANALYSIS" "$BUDGET" 2>/dev/null)
.venv/bin/adpdm bench --name "${NAME}_uniform" "${COMMON[@]}" >>"$OUT/results/${NAME}_uniform.log" 2>&1 &
.venv/bin/adpdm bench --name "${NAME}_bops${BUDGET%\%}" --layer-bits "$bits" "${COMMON[@]}" \
    >>"$OUT/results/${NAME}_bops${BUDGET%\%}.log" 2>&1 &
wait
