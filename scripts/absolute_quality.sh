#!/usr/bin/env bash
# Absolute quality of adpdm (issue 15): 1,000 samples per run on the benchmark's evaluation noise (seed 0) and
# calibration draws 1-4, with the benchmark's other settings, at the presets the issue names (W6A6, W4A8).
# embedded:mnist: Inception FID against the MNIST test set (2,000 images), beside the FP model's on the same
# noise (the fp32 row); embedded:mnist-cond: accuracy of the MNIST classifier on guided samples.
# About 6 minutes a run on the 2-core CPU (calibration, 1,000 samples, Inception features), 16 runs; resumable.
# Results: benchmarks/results/absolute_s10.{json,md} (session 10's code, as the benchmark full_s10);
# benchmarks/results/absolute.{json,md} holds session 9's run of the sessions 7-9 code (draws 1-2).
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "$ADPDM" bench --name absolute_s10 --methods adpdm --presets w6a6,w4a8 --num-samples 1000 --resume "$@"
