#!/usr/bin/env bash
# Quality of the embedded FP models, measured with the project's own commands (see README).
# Usage: bash scripts/fp_quality.sh [NUM_COND] [NUM_UNCOND]
set -euo pipefail
cd "$(dirname "$0")/.."
NUM_COND=${1:-200}
NUM_UNCOND=${2:-500}
mkdir -p benchmarks/results
# class-conditional model: classifier accuracy of guided samples (guidance 2.0) and classifier-feature FID
.venv/bin/adpdm evaluate --model embedded:mnist-cond --num-samples "$NUM_COND" --steps 100 --no-inception \
  --json benchmarks/results/fp_mnist-cond.json
# unconditional model: Inception FID against the MNIST test set
.venv/bin/adpdm evaluate --model embedded:mnist --num-samples "$NUM_UNCOND" --steps 100 --ref-num 1000 \
  --json benchmarks/results/fp_mnist.json
