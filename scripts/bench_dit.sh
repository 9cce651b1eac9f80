#!/usr/bin/env bash
# The benchmark on the class-conditional diffusion transformer embedded:mnist-dit: rtn, ptq4dm, qdiffusion,
# adpdm and adpdm-g1 (adpdm with one group: do the timestep groups pay on a transformer?) at W8A8, W8A6, W6A6
# and W4A8 (patch embedding and final projection at W8A8, output unquantized), calibration draws 1-4, scored
# on held-out evaluation noise (seed 0), with the UNet benchmark's other settings (scripts/bench_full.sh) but
# no Inception FID: on 128 samples it took 41 s per run on the 2-core CPU, longer than most calibrations; the
# rows keep PSNR against FP, classifier accuracy and the classifier-feature FID against MNIST and against FP.
# Draws 1-2 and 3-4 run side by side, one process and one thread each (every method of a draw shares its
# process, so calibration time ratios compare runs under the same load); scripts/merge_results.py then joins
# the two parts into benchmarks/results/benchmark_mnist-dit.{json,md} and its figures. Resumable: run it again
# after an interruption. `python3 scripts/verdicts.py benchmarks/results/benchmark_mnist-dit.json` prints the
# paired verdicts.
set -euo pipefail
cd "$(dirname "$0")/.."
ADPDM=${ADPDM:-.venv/bin/adpdm}
PYTHON=${PYTHON:-.venv/bin/python}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
args=(--models embedded:mnist-dit --methods rtn,ptq4dm,qdiffusion,adpdm,adpdm-g1 --presets w8a8,w8a6,w6a6,w4a8
      --eval '{"inception": false}' --resume)
for draws in 1,2 3,4; do
    part="part_mnist-dit_${draws/,/}"
    "$ADPDM" bench --name "$part" --draw-seeds "$draws" "${args[@]}" "$@" >>"benchmarks/results/$part.log" 2>&1 &
done
wait
"$PYTHON" scripts/merge_results.py benchmark_mnist-dit benchmarks/results/part_mnist-dit_12.json \
    benchmarks/results/part_mnist-dit_34.json
