"""Why do methods closer to FP in PSNR score a worse FID (against data and against FP)? Image statistics of
every method's samples on validation noise (seed 7), calibration draw 1, the benchmark's settings.

Per method: PSNR vs FP, FID vs data (2,000 MNIST test images), the same FID after the faint background is
set to black (every pixel below -0.8 set to -1: "bg-cleaned"), the background haze (RMS above -1 of the
pixels 3 or more pixels away from the FP sample's ink), the faint share (pixels in (-0.98, -0.8)), the ink
level (mean of each image's brightest 10%), the ink share (pixels above 0) and the accuracy of conditional
samples. Samples are saved to /tmp/fid_study/.
Usage: PYTHONPATH=. .venv/bin/python studies/fid-speckle/sample_stats.py MODEL PRESET [num] [methods]
e.g. ... embedded:mnist w4a8 256 rtn,ptq4dm,qdiffusion,adpdm
"""

import copy
import logging
import sys
from pathlib import Path

import torch
from haze import bench_calibration, faint_share, far_background

from adpdm.config import QuantConfig
from adpdm.eval.evaluate import EvalConfig, Evaluator
from adpdm.eval.metrics import background_haze, psnr
from adpdm.generate import generate
from adpdm.models.loading import load_model
from adpdm.ptq import run_ptq
from adpdm.sampling import SamplerConfig

logging.basicConfig(level=logging.WARNING)
SPEC, PRESET = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 256
METHODS = sys.argv[4].split(",") if len(sys.argv) > 4 else ["rtn", "ptq4dm", "qdiffusion", "adpdm"]
OUT = Path("/tmp/fid_study")
OUT.mkdir(exist_ok=True)

model = load_model(SPEC, None)
sched = model.scheduler_config
guidance = model.default_guidance if model.num_classes else 1.0
sampler = SamplerConfig(num_steps=20, seed=7, guidance_scale=guidance)
calib, recon = bench_calibration(1, guidance=guidance)  # the benchmark's, draw 1
ev = Evaluator(EvalConfig(ref_num=2000), progress=False)
out = generate(model, model.unet, N, sampler, progress=False)
samples, labels = {"fp32": out.images}, out.labels
for method in METHODS:
    unet = copy.deepcopy(model.unet)
    run_ptq(unet, sched, method, QuantConfig.preset(PRESET, num_steps=20), calib, recon,
            num_classes=model.num_classes, null_class=model.null_class, progress=False)  # fmt: skip
    samples[method] = generate(model, unet, N, sampler, progress=False).images
torch.save({"samples": samples, "labels": labels}, OUT / f"{SPEC.replace(':', '_')}_{PRESET}.pt")
fp = samples["fp32"]
background = far_background(fp)
for name, x in samples.items():
    res = ev.evaluate(x, labels)
    cleaned = ev.evaluate(torch.where(x < -0.8, torch.full_like(x, -1.0), x)).fid_data
    top = x.flatten(1).sort(dim=1).values[:, -x[0].numel() // 10 :]
    acc = "" if res.accuracy is None else f" accuracy {res.accuracy:.3f}"
    value = float(psnr(x, fp).mean()) if name != "fp32" else float("inf")
    print(f"{SPEC} {PRESET} {name:10s} psnr {value:.2f} fid_data {res.fid_data:.1f} bg-cleaned {cleaned:.1f} "
          f"haze {background_haze(x, fp):.4f} faint {faint_share(x):.4f} ink {float(top.mean()):.3f} "
          f"ink_share {float((x > 0).float().mean()):.3f}{acc}", flush=True)  # fmt: skip
