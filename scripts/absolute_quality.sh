#!/usr/bin/env bash
# Absolute quality of adpdm (issue 15): 1,000 samples per run on the benchmark's evaluation noise (seed 0) and
# calibration draws 1-4, with the benchmark's other settings, at the presets the issue names (W6A6, W4A8).
# embedded:mnist: Inception FID against the MNIST test set (2,000 images), beside the FP model's on the same
# noise (the fp32 row); embedded:mnist-cond: accuracy of the MNIST classifier on guided samples.
# About 6 minutes a run on the 2-core CPU (calibration, 1,000 samples, Inception features), 16 runs; resumable.
# Session 9 ran it with `--draws 2` (draws 1-2); running it again without `--draws` adds draws 3-4.
# Results: benchmarks/results/absolute.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "$ADPDM" bench --name absolute --methods adpdm --presets w6a6,w4a8 --num-samples 1000 --resume "$@"
