#!/usr/bin/env bash
# Row-error study: the reconstruction's row error, "relative" (each row's relative error) against "sampler" (the
# relative error times b_k^2 of the row's step), both with the whole-model check of step->group table changes.
# qdiffusion and adpdm on both embedded models, the benchmark's settings, calibration draws 1-2, scored on
# validation noise seed 7 (the benchmark evaluates on seed 0), with the teacher-forced output error of every
# step (--diagnose). The two settings run side by side (one thread each), about 3 minutes a row each; W8A8 ran
# for draw 1 on embedded:mnist only (the run was cut for time).
# Results: studies/row-error/results/val_rows_{relative,sampler}.{json,md}, figures in studies/row-error/figures/;
# val_rows_table.py pairs them (results/val_rows.md).
# Ran on 0.5.0's last commit (68d8dc6; results added with fcecb6d, which made "sampler" the default). The
# ReconConfig option it varies (row_error) was deleted in 0.6.0 (commit 353f127: "sampler" is the only row error
# now); to repeat the study, check out 68d8dc6.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for rows in relative sampler; do
    "$ADPDM" bench --name "val_rows_$rows" --methods qdiffusion,adpdm --presets w8a6,w4a8,w4a6 \
        --draws 2 --seed 7 --num-samples 128 --diagnose --recon "{\"row_error\": \"$rows\"}" \
        --out studies/row-error --resume "$@" &
done
wait
