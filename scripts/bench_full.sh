#!/usr/bin/env bash
# The full multi-draw benchmark (issue 15's configuration): both embedded models, rtn, ptq4dm, qdiffusion and
# adpdm at W8A8, W8A6, W6A6, W4A8, W4A6 (first and last layer at W8A8) and W4A8-strict, each on calibration
# draws 1-4, scored on held-out evaluation noise (seed 0). About 5 hours on the 2-core CPU; the issue-14 run
# (W8A8/W6A6/W4A8, strict layers, session 5's code) is in benchmarks/results/issue14/.
# Results: benchmarks/results/full_s10.{json,md}, figures in benchmarks/figures/full_s10_*. An interrupted run
# continues where it stopped when this script is run again (every finished row is saved at once).
# full_s10 is the run of session 10's code (sampler-weighted row error, whole-model check of table changes,
# the background haze in every row); benchmarks/results/full.{json,md} is sessions 7-9's (code 25c2925).
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
# OpenMP threads that spin while waiting make a run share the 2 cores very badly (a rtn calibration
# went from 2 s to 99 s beside another job); passive waiting costs little when the machine is idle.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "$ADPDM" bench --name full_s10 --resume "$@"
