#!/usr/bin/env bash
# Speed and size of the ONNX Runtime deployment, on an otherwise idle machine.
# Quantizes four checkpoints of embedded:mnist and runs `adpdm bench-deploy` on each (the W4A8 one with its
# 4-bit weights stored as 4 bits, --weight-format uint4); results go to
# benchmarks/results/deploy_<name>.{json,md}. Usage: bash scripts/bench_deploy.sh [WORKDIR] [--quick]
set -euo pipefail
WORK=${1:-/tmp/adpdm-deploy}
QUICK=${2:-}
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_NUM_THREADS=1
mkdir -p "$WORK"
[ -d "$WORK/rtn_w8a8" ] || $ADPDM quantize --model embedded:mnist --method rtn --preset w8a8 --out "$WORK/rtn_w8a8"
[ -d "$WORK/rtn_w4a8" ] || $ADPDM quantize --model embedded:mnist --method rtn --preset w4a8 --out "$WORK/rtn_w4a8"
# four timestep groups: four graphs sharing one weight file (few iterations: speed and size do not depend on them)
[ -d "$WORK/adpdm_w8a8_g4" ] || $ADPDM quantize --model embedded:mnist --method adpdm --preset w8a8 --groups 4 \
    --iters 5 --out "$WORK/adpdm_w8a8_g4"
[ -d "$WORK/adpdm_w4a8_g4" ] || $ADPDM quantize --model embedded:mnist --method adpdm --preset w4a8 --groups 4 \
    --iters 5 --out "$WORK/adpdm_w4a8_g4"
for name in rtn_w8a8 rtn_w4a8 adpdm_w8a8_g4; do
    $ADPDM bench-deploy --quantized "$WORK/$name" --name "$name${QUICK:+_quick}" $QUICK
done
$ADPDM bench-deploy --quantized "$WORK/adpdm_w4a8_g4" --weight-format uint4 --name "adpdm_w4a8_g4_uint4${QUICK:+_quick}" \
    $QUICK
