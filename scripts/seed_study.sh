#!/usr/bin/env bash
# Every method over several calibration draws (issue 4): PSNR against FP samples of held-out noise (seed 0, the
# benchmark's) and the teacher-forced per-step output error, for W4A8 and W6A6 on both embedded models.
# Results: benchmarks/results/seed_study/<model>.{json,md}. Usage: bash scripts/seed_study.sh [SEEDS] [NUM]
set -euo pipefail
SEEDS=${1:-1,2,3,4}
NUM=${2:-128}
PY=${PY:-.venv/bin/python}
METHODS=${METHODS:-rtn,ptq4dm,qdiffusion,adpdm,adpdm-g1}
OUT=benchmarks/results/seed_study
mkdir -p "$OUT"
for model in mnist mnist-cond; do
    $PY scripts/recon_diagnosis.py --model "$model" --methods "$METHODS" --presets w4a8,w6a6 \
        --variants '{"default": {}}' --seed 0 --num "$NUM" --calib-seeds "$SEEDS" --out "$OUT/$model.json"
done
