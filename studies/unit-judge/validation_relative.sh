#!/usr/bin/env bash
# Validation study (issue 15), first part: all four methods with the session-6 defaults of the time (field
# protocol, DP partition with ranges from every step, SignRound, relative row error, and a held-out split
# of each unit's calibration rows at the calibration steps only), on embedded:mnist, calibration draws 1-2,
# scored on validation noise seed 7 (the benchmark evaluates on seed 0).
# Results: benchmarks/validation/results/val_relative.{json,md}. scripts/validation_heldout.sh is the second part.
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$ADPDM" bench --name val_relative --methods rtn,ptq4dm,qdiffusion,adpdm --models embedded:mnist \
    --presets w8a8,w6a6,w4a8 --draws 2 --seed 7 --num-samples 64 --out benchmarks/validation --resume
