#!/usr/bin/env bash
# The row-sampling seed's spread with a majority vote of several optimisations per unit (ReconConfig.votes, 3 by
# default, each with the benchmark's 50 iterations), W4A8 on calibration draw 2, adpdm and qdiffusion in parallel
# (one thread each); results appended to results/sources.log beside the single-vote runs of the same seeds.
# The option was deleted after this study: run it at commit 94dad25.
# Usage: VOTES=3 bash studies/reconstruction-seed/votes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 PYTHONPATH=. VOTES=${VOTES:-3}
LOG=studies/reconstruction-seed/results/sources.log
for method in adpdm qdiffusion; do
  .venv/bin/python studies/reconstruction-seed/sources.py w4a8 2 "$method" rows 0,1,2,3 >>"$LOG" 2>&1 &
done
wait
