#!/usr/bin/env bash
# Quality of the embedded FP models, measured with the project's own commands (see README).
# Usage: bash scripts/fp_quality.sh [NUM_COND] [NUM_UNCOND] [REF_NUM]
# Defaults: 1,000 guided conditional samples (classifier accuracy and classifier-feature FID),
# 2,000 unconditional samples for the Inception FID against the first 2,000 MNIST test images. The
# class-conditional DiT is measured like the conditional UNet.
set -euo pipefail
cd "$(dirname "$0")/.."
NUM_COND=${1:-1000}
NUM_UNCOND=${2:-2000}
REF_NUM=${3:-2000}
mkdir -p benchmarks/results
# class-conditional model: classifier accuracy of guided samples (guidance 2.0) and classifier-feature FID
.venv/bin/adpdm evaluate --model embedded:mnist-cond --num-samples "$NUM_COND" --steps 100 --no-inception \
  --json benchmarks/results/fp_mnist-cond.json
.venv/bin/adpdm evaluate --model embedded:mnist-dit --num-samples "$NUM_COND" --steps 100 --no-inception \
  --json benchmarks/results/fp_mnist-dit.json
# the DiT also without guidance and at 3.0 and 4.0 (the scale the DiT papers sample with): accuracy against
# classifier-feature FID as guidance grows
for g in 1 3 4; do
  .venv/bin/adpdm evaluate --model embedded:mnist-dit --num-samples "$NUM_COND" --steps 100 --guidance "$g" \
    --no-inception --json "benchmarks/results/fp_mnist-dit_guidance$g.json"
done
# unconditional model: Inception FID against the MNIST test set
.venv/bin/adpdm evaluate --model embedded:mnist --num-samples "$NUM_UNCOND" --steps 100 --ref-num "$REF_NUM" \
  --json benchmarks/results/fp_mnist.json
