#!/usr/bin/env bash
# The row-sampling seed's spread with SignRound along the sign of averaged gradients (ReconConfig.sign_momentum),
# W4A8 on calibration draw 2, adpdm and qdiffusion in parallel (one thread each); results appended to
# results/sources.log. The option was deleted after this study: run it at commit f88ca88.
# Usage: MOMENTUM=0.9 bash studies/reconstruction-seed/momentum.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 PYTHONPATH=. MOMENTUM=${MOMENTUM:-0.9}
LOG=studies/reconstruction-seed/results/sources.log
for method in adpdm qdiffusion; do
  .venv/bin/python studies/reconstruction-seed/sources.py w4a8 2 "$method" rows 0,1,2,3 >>"$LOG" 2>&1 &
done
wait
