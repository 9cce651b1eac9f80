#!/usr/bin/env bash
# The full multi-draw benchmark: both embedded models, rtn, ptq4dm, qdiffusion and adpdm at W8A8, W8A6, W6A6,
# W4A8, W4A6 (first and last layer at W8A8) and W4A8-strict, each on calibration draws 1-4, scored on held-out
# evaluation noise (seed 0).
# The two models run side by side, one process and one thread each (on the 2-core CPU two one-thread processes
# finish sooner than one two-thread process; every method of a model shares its process, so the calibration
# time ratios compare runs under the same load). About 3 hours on the 2-core CPU.
# Results: benchmarks/results/benchmark_mnist.{json,md,log} and benchmark_mnist-cond.*, figures in
# benchmarks/figures/benchmark_*. An interrupted run continues where it stopped when this script is run again
# (every finished row is saved at once); each file records the version and commit that made it. Results of
# earlier versions are in benchmarks/archive/. MODELS="mnist" runs one model only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/per_model.sh
bench_per_model benchmark "$@"
