#!/usr/bin/env bash
# Unit-judge study, first part: all four methods with the reconstruction of 0.5.0's first commits (field
# protocol, DP partition with ranges from every step, SignRound, relative row error, and each unit judged on a
# held-out split of its own calibration rows at the calibration steps only), on embedded:mnist, calibration
# draws 1-2, scored on validation noise seed 7 (the benchmark evaluates on seed 0).
# Results: studies/unit-judge/results/val_relative.{json,md}, figures in studies/unit-judge/figures/.
# validation_heldout.sh is the second part. Ran on 0.5.0 (commit eca6ebc); check that commit out to repeat it.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$ADPDM" bench --name val_relative --methods rtn,ptq4dm,qdiffusion,adpdm --models embedded:mnist \
    --presets w8a8,w6a6,w4a8 --draws 2 --seed 7 --num-samples 64 --out studies/unit-judge --resume
