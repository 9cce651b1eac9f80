#!/usr/bin/env bash
# Unit-judge study, third part: with the sampler-output check of the whole result (SamplerCheck), is the unit's
# own held-out error (accept_on "unit") a better per-unit decision than the whole model's one-step error
# ("model", studies/range-start/validation_start.sh)? Same draws and validation noise (embedded:mnist, draws
# 1-2, seed 7).
# Results: studies/unit-judge/results/val_unit_judge.{json,md}, figures in studies/unit-judge/figures/.
# Ran on 0.5.0 (commit a60ee9e). The ReconConfig option it sets (accept_on) was deleted in 0.6.0 (commit
# 353f127: "unit" is the only judge now); to repeat the study, check out a 0.5.0 commit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$ADPDM" bench --name val_unit_judge --methods qdiffusion,adpdm --models embedded:mnist --presets w8a8,w6a6,w4a8 \
    --draws 2 --seed 7 --num-samples 64 --out studies/unit-judge --resume --recon '{"accept_on": "unit"}'
