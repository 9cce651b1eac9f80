#!/usr/bin/env bash
# Speed and size of the ONNX Runtime deployment, on an otherwise idle machine.
# Quantizes four checkpoints of embedded:mnist and two of embedded:mnist-dit and runs `adpdm bench-deploy` on
# each (the W4A8 ones with their 4-bit weights stored as 4 bits, --weight-format uint4); results go to
# benchmarks/results/deploy_<name>.{json,md}. Usage: bash scripts/bench_deploy.sh [WORKDIR] [--quick]
set -euo pipefail
WORK=${1:-/tmp/adpdm-deploy}
QUICK=${2:-}
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_NUM_THREADS=1
mkdir -p "$WORK"
quantize() {  # NAME MODEL METHOD PRESET [ARGS...]: quantize once into $WORK/NAME
    local name=$1 model=$2 method=$3 preset=$4
    shift 4
    [ -d "$WORK/$name" ] || $ADPDM quantize --model "$model" --method "$method" --preset "$preset" --out "$WORK/$name" "$@"
}
quantize rtn_w8a8 embedded:mnist rtn w8a8
quantize rtn_w4a8 embedded:mnist rtn w4a8
# four timestep groups: one graph per group sharing one weight file (few iterations: speed and size do not depend
# on them)
quantize adpdm_w8a8_g4 embedded:mnist adpdm w8a8 --groups 4 --iters 5
quantize adpdm_w4a8_g4 embedded:mnist adpdm w4a8 --groups 4 --iters 5
quantize dit_adpdm_w8a8_g4 embedded:mnist-dit adpdm w8a8 --groups 4 --iters 5
quantize dit_adpdm_w4a8_g4 embedded:mnist-dit adpdm w4a8 --groups 4 --iters 5
for name in rtn_w8a8 rtn_w4a8 adpdm_w8a8_g4 dit_adpdm_w8a8_g4; do
    $ADPDM bench-deploy --quantized "$WORK/$name" --name "$name${QUICK:+_quick}" $QUICK
done
for name in adpdm_w4a8_g4 dit_adpdm_w4a8_g4; do
    $ADPDM bench-deploy --quantized "$WORK/$name" --weight-format uint4 --name "${name}_uint4${QUICK:+_quick}" $QUICK
done
