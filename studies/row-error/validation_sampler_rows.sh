#!/usr/bin/env bash
# Validation study (issue 15, session 10): the reconstruction's row error, "relative" (each row's relative
# error) against "sampler" (the relative error times b_k^2 of the row's step), both with the whole-model check
# of step->group table changes. qdiffusion and adpdm on both embedded models, the benchmark's settings,
# calibration draws 1-2, scored on validation noise seed 7 (the benchmark evaluates on seed 0), with the
# teacher-forced output error of every step (--diagnose). The two settings run side by side (one thread each),
# about 3 minutes a row each; W8A8 ran for draw 1 on embedded:mnist only (the study was cut to fit a session).
# Results: benchmarks/validation/results/val_rows_{relative,sampler}.{json,md}.
# The ReconConfig option this study varies was deleted in session 11 (it lost); to repeat the study, run it at
# the commit before that deletion (git log -- adpdm/recon/reconstruct.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for rows in relative sampler; do
    "$ADPDM" bench --name "val_rows_$rows" --methods qdiffusion,adpdm --presets w8a6,w4a8,w4a6 \
        --draws 2 --seed 7 --num-samples 128 --diagnose --recon "{\"row_error\": \"$rows\"}" \
        --out benchmarks/validation --resume "$@" &
done
wait
