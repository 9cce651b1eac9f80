#!/usr/bin/env bash
# Validation study (issue 15): the new defaults (field protocol, DP partition with ranges from every step,
# held-out acceptance, SignRound, relative row error) for all four methods, then the reconstruction methods
# with the papers' absolute row error, on embedded:mnist, calibration draws 1-2, scored on validation noise
# seed 7 (the benchmark evaluates on seed 0). Results: benchmarks/validation/results/val_*.{json,md}.
# As run in session 6: val_relative with the held-out split of each unit's calibration rows (a quarter of
# the trajectories, at the calibration steps only); val_absolute, started after it, already with the held-out
# trajectories judged at every step (scripts/validation_heldout.sh runs the same with the relative error).
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
common=(--models embedded:mnist --presets w8a8,w6a6,w4a8 --draws 2 --seed 7 --num-samples 64 --out benchmarks/validation --resume)
"$ADPDM" bench --name val_relative --methods rtn,ptq4dm,qdiffusion,adpdm "${common[@]}"
"$ADPDM" bench --name val_absolute --methods qdiffusion,adpdm --recon '{"row_error": "absolute"}' "${common[@]}"
