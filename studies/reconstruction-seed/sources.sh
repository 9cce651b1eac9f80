#!/usr/bin/env bash
# The two sources of the reconstruction's randomness, one at a time (see sources.py), W4A8 on calibration draw 2,
# adpdm and qdiffusion in parallel (one thread each); results appended to results/sources.log.
# Usage: bash studies/reconstruction-seed/sources.sh   (ITERS / BATCH in the environment change the budget)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 PYTHONPATH=.
LOG=studies/reconstruction-seed/results/sources.log
for method in adpdm qdiffusion; do
  ( .venv/bin/python studies/reconstruction-seed/sources.py w4a8 2 "$method" rows 0,1,2,3
    .venv/bin/python studies/reconstruction-seed/sources.py w4a8 2 "$method" split 1,2,3 ) >>"$LOG" 2>&1 &
done
wait
