#!/usr/bin/env bash
# Validation study (issue 15), fourth part: with the sampler-output check of the whole result (session 7), is the
# unit's own held-out error (accept_on "unit") a better per-unit decision than the whole model's one-step error
# ("model")? Same draws and validation noise as scripts/validation_start.sh (embedded:mnist, draws 1-2, seed 7).
# Results: benchmarks/validation/results/val_unit_judge.{json,md}.
# The ReconConfig option this study varies was deleted in session 11 (it lost); to repeat the study, run it at
# the commit before that deletion (git log -- adpdm/recon/reconstruct.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$ADPDM" bench --name val_unit_judge --methods qdiffusion,adpdm --models embedded:mnist --presets w8a8,w6a6,w4a8 \
    --draws 2 --seed 7 --num-samples 64 --out benchmarks/validation --resume --recon '{"accept_on": "unit"}'
