"""Why do the reconstruction methods score a worse FID against data than ptq4dm at W4A8 while they are
closer to FP in PSNR? Image statistics of every method's samples on validation noise (seed 7), draw 1.

Prints per method: PSNR vs FP, FID vs data (2,000 MNIST test images) and vs FP, the background level (mean of
each image's darkest half), the ink level (mean of its brightest 10%), the ink share (pixels above 0) and the
sharpness (mean absolute horizontal + vertical difference). Saves the samples to /tmp/fid_study/<preset>.pt.
Usage: PYTHONPATH=. python scripts/fid_study/sample_stats.py w4a8 [num]
"""

import copy
import sys
from pathlib import Path

import torch

from adpdm.config import QuantConfig
from adpdm.eval.evaluate import EvalConfig, Evaluator
from adpdm.eval.metrics import psnr
from adpdm.models.loading import load_model
from adpdm.ptq import CalibConfig, ReconConfig, run_ptq
from adpdm.sampling import SamplerConfig, sample

torch.set_num_threads(2)
PRESET = sys.argv[1] if len(sys.argv) > 1 else "w4a8"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 256
OUT = Path("/tmp/fid_study")
OUT.mkdir(exist_ok=True)


def stats(x: torch.Tensor) -> dict:
    flat = x.flatten(1).sort(dim=1).values
    n = flat.shape[1]
    grad = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return {
        "background": float(flat[:, : n // 2].mean()),
        "ink": float(flat[:, -n // 10 :].mean()),
        "ink_share": float((x > 0).float().mean()),
        "sharpness": float(grad),
    }


model = load_model("embedded:mnist", None)
sched = model.scheduler_config
sampler = SamplerConfig(num_steps=20, seed=7)
# the benchmark's calibration, draw 1
CALIB = CalibConfig(num_samples=16, calib_steps=6, signature_samples=4, sampler=SamplerConfig(num_steps=20, seed=1))
ev = Evaluator(EvalConfig(ref_num=2000), progress=False)
samples = {"fp32": sample(model.unet, sched, N, sampler, progress=False).images}
for method in ("rtn", "ptq4dm", "qdiffusion", "adpdm"):
    unet = copy.deepcopy(model.unet)
    run_ptq(unet, sched, method, QuantConfig.preset(PRESET, num_steps=20), CALIB, ReconConfig(iters=50), progress=False)
    samples[method] = sample(unet, sched, N, sampler, progress=False).images
torch.save(samples, OUT / f"{PRESET}.pt")
fp = samples["fp32"]
fp_stats = ev.fp_inception_stats(fp)
for name, x in samples.items():
    res = ev.evaluate(x, None, fp_images=None if name == "fp32" else fp, fp_stats=None if name == "fp32" else fp_stats)
    p = "" if name == "fp32" else f"psnr {float(psnr(x, fp).mean()):.2f} "
    s = " ".join(f"{k} {v:.3f}" for k, v in stats(x).items())
    print(f"{PRESET} {name:10s} {p}fid_data {res.fid_data:.1f} fid_fp {res.fid_fp} {s}", flush=True)
