#!/usr/bin/env bash
# The benchmark's rows of the mixed-precision recipe: W6A6 with the layers that `adpdm analyze --suggest BUDGET
# --suggest-by bops` raises to 8 bits (default +10% bit-operations), for qdiffusion and adpdm alike, on the
# benchmark's evaluation noise (seed 0) and calibration draws 1-4, embedded:mnist. The rows are labelled
# w6a6-mixed with their effective bits; they pair with the uniform W6A6 rows of benchmarks/results/benchmark_mnist.*.
# Needs the analysis of scripts/analyze_all.sh. Results: benchmarks/results/mixed_mnist.{json,md,log}; resumable.
# Usage: bash scripts/bench_mixed.sh [BUDGET]
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-10%}
bits=$(PYTHONPATH=. .venv/bin/python studies/mixed-precision-bops/suggest.py \
    benchmarks/results/analyze/mnist_w6a6/analysis.json "$BUDGET" 2>/dev/null)
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} .venv/bin/adpdm bench --name mixed_mnist --models embedded:mnist \
    --methods qdiffusion,adpdm --presets w6a6 --layer-bits "$bits" --resume >>benchmarks/results/mixed_mnist.log 2>&1
