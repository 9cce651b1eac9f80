#!/usr/bin/env bash
# Validation study (issue 15), third part (units accepted on the model judge, the default then): whole-model
# decisions on the sampler's output (ReconConfig.sample_judge:
# the activation ranges reconstruction starts from, recipe's or min-max, and whether the reconstructed model is
# kept over its start) and the group search on the first half of each unit's iterations (search_fraction 0.5),
# on the draws and validation noise of scripts/validation_heldout.sh (embedded:mnist, draws 1-2, seed 7), whose
# results are the "before".
# Results: benchmarks/validation/results/val_start.{json,md}.
# The ReconConfig option this study varies was deleted in session 11 (it lost); to repeat the study, run it at
# the commit before that deletion (git log -- adpdm/recon/reconstruct.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$ADPDM" bench --name val_start --methods rtn,qdiffusion,adpdm --models embedded:mnist --presets w8a8,w6a6,w4a8 \
    --draws 2 --seed 7 --num-samples 64 --out benchmarks/validation --resume --recon '{"accept_on": "model"}'
