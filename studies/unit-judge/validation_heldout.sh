#!/usr/bin/env bash
# Unit-judge study, second part: the reconstruction methods with each unit's result judged by the whole model's
# held-out error (held-out trajectories at every sampling step, weighted by the sampler's sensitivity; relative
# row error), on the draws and validation noise of validation_relative.sh (embedded:mnist, draws 1-2, seed 7).
# Results: studies/unit-judge/results/val_heldout.{json,md}, figures in studies/unit-judge/figures/.
# Ran on 0.5.0 (commit 2bd0567); the whole-model judge of units was deleted in 0.6.0, so to repeat it check out
# that commit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$ADPDM" bench --name val_heldout --methods qdiffusion,adpdm --models embedded:mnist --presets w8a8,w6a6,w4a8 \
    --draws 2 --seed 7 --num-samples 64 --out studies/unit-judge --resume
