#!/usr/bin/env bash
# Validation study (issue 15), second part: the reconstruction methods with the final defaults (held-out
# trajectories at every sampling step, each unit's result judged by the whole model's held-out error, relative
# row error), on the draws and validation noise of scripts/validation_row_error.sh (embedded:mnist, draws
# 1-2, seed 7).
# Results: benchmarks/validation/results/val_heldout.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$ADPDM" bench --name val_heldout --methods qdiffusion,adpdm --models embedded:mnist --presets w8a8,w6a6,w4a8 \
    --draws 2 --seed 7 --num-samples 64 --out benchmarks/validation --resume
