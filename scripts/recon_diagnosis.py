"""Which part of block reconstruction helps or hurts? PSNR of quantized samples against FP samples.

Runs one method at one preset with parts of the reconstruction switched off (learned rounding,
learned activation scales), same calibration data and the same sampling noise, and prints a
table. Usage: python scripts/recon_diagnosis.py [METHOD] [PRESET] [NUM_SAMPLES]
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time

import adpdm
from adpdm.embedded import load_embedded
from adpdm.eval.metrics import psnr
from adpdm.ptq import CalibConfig, run_ptq
from adpdm.recon.reconstruct import ReconConfig
from adpdm.sampling import SamplerConfig, sample
from adpdm.utils.resources import machine_description


def main() -> None:
    method = sys.argv[1] if len(sys.argv) > 1 else "qdiffusion"
    preset = sys.argv[2] if len(sys.argv) > 2 else "w6a6"
    num = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    k = 20
    model = load_embedded("mnist")
    sampler = SamplerConfig(num_steps=k)
    calib = CalibConfig(
        num_samples=16, calib_steps=6, signature_samples=4, sampler=dataclasses.replace(sampler, seed=1)
    )
    fp = sample(model.unet, model.scheduler_config, num, sampler, progress=False).images
    variants = {
        "full": ReconConfig(iters=50),
        "no learned act scales": ReconConfig(iters=50, learn_act_scales=False),
        "no learned rounding": ReconConfig(iters=50, learn_rounding=False),
    }
    rows = []
    for name, recon in variants.items():
        start = time.perf_counter()
        qcfg = adpdm.QuantConfig.preset(preset, num_steps=k)
        q = run_ptq(copy.deepcopy(model.unet), model.scheduler_config, method, qcfg, calib, recon, progress=False).model
        out = sample(q, model.scheduler_config, num, sampler, progress=False).images
        rows.append({"variant": name, "psnr": float(psnr(out, fp).mean()), "seconds": time.perf_counter() - start})
        print(f"{method} {preset} {name}: PSNR {rows[-1]['psnr']:.2f} dB", flush=True)
    print(json.dumps({"method": method, "preset": preset, "num_samples": num, "rows": rows,
                      "machine": machine_description()}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
