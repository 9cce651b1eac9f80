#!/usr/bin/env bash
# Train the three embedded models side by side on one CUDA GPU, then check them and the CUDA path.
#
# Usage: bash scripts/train_embedded_gpu.sh OUT_DIR [MINUTES]
#
# Each model (the UNets mnist and mnist-cond, the class-conditional DiT mnist-dit) continues from the shipped
# weights (--init-from) for MINUTES (default 6) of wall time, all three side by side, with the cosine schedule
# fitted to that budget (--fit-to-time). Then, with the new
# weights copied into the package tree of this checkout:
#   - the conditional model's classifier accuracy on 2,000 guided samples (no Inception: the
#     FID network is measured on the CPU machine, see scripts/fp_quality.sh),
#   - a sample grid of each model,
#   - `adpdm quantize` (rtn, qdiffusion, adpdm at W4A8) and `adpdm sample` on CUDA, as a check
#     that the whole pipeline runs there, with the calibration times in each report.json.
# Everything lands in OUT_DIR; the trained models in OUT_DIR/models.tar.gz. The checks after
# training never abort the script (a failure is logged), so the trained weights always survive.
# DEVICE (default cuda), QUANT_ARGS and EVAL_NUM (default 2000) override the settings, for a
# dry run on a CPU: DEVICE=cpu QUANT_ARGS="--iters 2 --num-samples 2 --steps 10" EVAL_NUM=20 ...
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:?usage: train_embedded_gpu.sh OUT_DIR [MINUTES]}")
minutes=${2:-6}
device=${DEVICE:-cuda}
read -r -a quant_args <<<"${QUANT_ARGS:-}"
mkdir -p "$out/train"
python=${PYTHON:-python3}
adpdm() { "$python" -m adpdm.cli.main "$@" || echo "FAILED: adpdm $*"; }
"$python" -c "import torch, diffusers, adpdm; d = torch.device('$device'); \
assert d.type != 'cuda' or torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'diffusers', diffusers.__version__, \
      torch.cuda.get_device_name() if d.type == 'cuda' else 'cpu')"

pids=()
for name in mnist mnist-cond mnist-dit; do
  "$python" scripts/train_embedded.py --name "$name" --device "$device" --batch-size 256 --steps 200000 \
    --max-minutes "$minutes" --fit-to-time --init-from "adpdm/embedded/assets/$name" --threads 4 \
    --out "$out/train/$name" >"$out/train_$name.log" 2>&1 &
  pids+=($!)
done
# the whole pipeline on the device, on the shipped models, while it trains (timings are shared)
for method in rtn qdiffusion adpdm; do
  adpdm quantize --model embedded:mnist --method "$method" --preset w4a8 --device "$device" "${quant_args[@]}" \
    --out "$out/q_$method" >"$out/quantize_$method.log" 2>&1
done
adpdm sample --model embedded:mnist --quantized "$out/q_adpdm" --num 64 --device "$device" \
  --out "$out/adpdm_w4a8.png" >"$out/checks.log" 2>&1
for pid in "${pids[@]}"; do wait "$pid"; done
tail -n 3 "$out"/train/*/train_log.txt
tar -czf "$out/models.tar.gz" -C "$out/train" mnist mnist-cond mnist-dit

for name in mnist mnist-cond mnist-dit; do
  cp "$out/train/$name"/* "adpdm/embedded/assets/$name/"
  adpdm sample --model "embedded:$name" --num 100 --device "$device" --out "$out/fp_$name.png" >>"$out/checks.log" 2>&1
done
adpdm evaluate --model embedded:mnist-cond --num-samples "${EVAL_NUM:-2000}" --no-inception --device "$device" \
  --json "$out/fp_mnist-cond_gpu.json" >>"$out/checks.log" 2>&1
grep -h "FAILED\|Error" "$out"/*.log || true
grep -h "calib_seconds\|wall" "$out"/q_*/report.json || true
cat "$out/fp_mnist-cond_gpu.json"
