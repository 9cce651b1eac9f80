#!/usr/bin/env bash
# Where do timestep groups pay? adpdm-g1 (adpdm's recipe with one group: SRM steps, ranges from every step,
# no search) at the activation-limited presets W8A6, W6A6 and W4A6, on both embedded models, calibration
# draws 1-4, with the benchmark's other settings and evaluation noise (seed 0). Its rows pair with adpdm's
# rows of scripts/bench_full.sh by model, preset and draw (same settings, same noise, one thread: a run is
# deterministic), and `python3 scripts/verdicts.py benchmarks/results/benchmark_*.json
# benchmarks/results/groups_*.json` prints adpdm minus adpdm-g1. Run it after bench_full.sh (both use both
# cores); about 40 minutes on the 2-core CPU.
# Results: benchmarks/results/groups_{mnist,mnist-cond}.{json,md,log}; resumable. MODELS="mnist" runs one
# model only (e.g. on the core that one model of bench_full.sh has freed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/per_model.sh
bench_per_model groups --methods adpdm-g1 --presets w8a6,w6a6,w4a6 "$@"
