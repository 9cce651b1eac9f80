#!/usr/bin/env bash
# Range-start study, the run with the whole-model decisions on the sampler's output (ReconConfig.sample_judge:
# the activation ranges reconstruction starts from, the recipe's or min-max, and whether the reconstructed model
# is kept over its start) and the group search on the first half of each unit's iterations (search_fraction
# 0.5), units accepted on the whole model's one-step error (accept_on "model", the default then), on the draws
# and validation noise of studies/unit-judge/validation_heldout.sh (embedded:mnist, draws 1-2, seed 7), whose
# results are the "before".
# Results: studies/range-start/results/val_start.{json,md}, figures in studies/range-start/figures/.
# Ran on 0.5.0 (commit a60ee9e). The ReconConfig option it sets (accept_on) was deleted in 0.6.0 (commit
# 353f127); to repeat the study, check out a 0.5.0 commit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$ADPDM" bench --name val_start --methods rtn,qdiffusion,adpdm --models embedded:mnist --presets w8a8,w6a6,w4a8 \
    --draws 2 --seed 7 --num-samples 64 --out studies/range-start --resume --recon '{"accept_on": "model"}'
