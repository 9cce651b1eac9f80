#!/usr/bin/env bash
# Absolute quality of adpdm: 1,000 samples per run on the benchmark's evaluation noise (seed 0) and calibration
# draws 1-4 (DRAWS=1,2 for fewer), with the benchmark's other settings, at W6A6 and W4A8. embedded:mnist:
# Inception FID against the MNIST test set (2,000 images), beside the FP model's on the same noise (the fp32
# row); embedded:mnist-cond: accuracy of the MNIST classifier on guided samples.
# One process and one thread per model, side by side (as scripts/bench_full.sh); MODELS="mnist" runs one model.
# Results: benchmarks/results/absolute_{mnist,mnist-cond}.{json,md,log}; resumable. Arguments go to
# `adpdm bench`, e.g. --eval '{"inception": false}' (accuracy only, much faster).
# `python3 scripts/verdicts.py benchmarks/results/absolute_*.json` reads the aims.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/per_model.sh
bench_per_model absolute --methods adpdm --presets w6a6,w4a8 --num-samples 1000 --draw-seeds "${DRAWS:-1,2,3,4}" "$@"
