#!/usr/bin/env bash
# Shared by scripts/bench_full.sh, bench_groups.sh and absolute_quality.sh: one `adpdm bench` process per embedded
# model (MODELS, default "mnist mnist-cond"), one thread each, side by side, each resuming
# benchmarks/results/STEM_MODEL.json and appending to its .log. Usage (sourced): bench_per_model STEM [ARG ...]
ADPDM=${ADPDM:-.venv/bin/adpdm}
# OpenMP threads that spin while waiting make a run share the 2 cores very badly (a rtn calibration
# went from 2 s to 99 s beside another job); passive waiting costs little when the machine is idle.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

bench_per_model() {
    local stem=$1 model
    shift
    for model in ${MODELS:-mnist mnist-cond}; do
        "$ADPDM" bench --name "${stem}_$model" --models "embedded:$model" --resume "$@" \
            >>"benchmarks/results/${stem}_$model.log" 2>&1 &
    done
    wait
}
