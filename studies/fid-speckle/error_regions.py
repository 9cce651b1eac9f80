"""Which part of a quantized sample's error does Inception register? The error of the quantized samples against
FP (same validation noise, seed 7) is moved onto the FP samples one part at a time, and each hybrid is scored
with the Inception FID against FP and against data (2,000 MNIST test images).

Parts by place (disjoint, from the FP sample): "far" background (3 or more pixels from ink, the haze),
"ring" (background next to ink), "edge" (ink at or below 0: the strokes' anti-aliased rim), "core" (ink above 0).
Parts by frequency: "low" (the error blurred by a 5x5 Gaussian, sigma 1) and "high" (the rest). Parts by sign:
"brighter" (quant above FP) and "darker". Each part's share of the error's energy is printed beside its FIDs.

The samples are saved to /tmp/fid_study/ and reused by a second run with the same arguments.
Usage: PYTHONPATH=. .venv/bin/python studies/fid-speckle/error_regions.py PRESET DRAW [METHOD] [num] [MODEL]
e.g. ... w6a6 1 adpdm 1000
"""

import copy
import logging
from pathlib import Path

import torch
from haze import bench_calibration, far_background, study_args, validation_setup

from adpdm.config import QuantConfig
from adpdm.eval.evaluate import EvalConfig, Evaluator
from adpdm.eval.metrics import background_haze, fid_from_features, psnr
from adpdm.generate import generate
from adpdm.ptq import run_ptq

logging.basicConfig(level=logging.WARNING)
torch.set_num_threads(1)
PRESET, DRAW, METHOD, N, SPEC = study_args(1000)
OUT = Path("/tmp/fid_study")
OUT.mkdir(exist_ok=True)
cache = OUT / f"regions_{SPEC.replace(':', '_')}_{PRESET}_d{DRAW}_{METHOD}_{N}.pt"

if cache.exists():
    fp, quant = torch.load(cache, weights_only=True).values()
else:
    model, classes, sampler, fp = validation_setup(SPEC, N)
    calib, recon = bench_calibration(DRAW, guidance=sampler.guidance_scale)
    unet = copy.deepcopy(model.unet)
    run_ptq(unet, model.scheduler_config, METHOD, QuantConfig.preset(PRESET, num_steps=20), calib, recon,
            progress=False, **classes)  # fmt: skip
    quant = generate(model, unet, N, sampler, progress=False).images
    torch.save({"fp": fp, "quant": quant}, cache)


def blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """A separable 5x5 Gaussian blur per channel, edges replicated."""
    t = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5).contiguous(), groups=c)
    return torch.nn.functional.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1).contiguous(), groups=c)


err = quant - fp
far = far_background(fp)
stroke = fp > -0.95
core = fp > 0
low = blur(err)
parts = {
    "all": err,
    "far": err * far,
    "ring": err * (~far & ~stroke),
    "edge": err * (stroke & ~core),
    "core": err * core,
    "low": low,
    "high": err - low,
    "brighter": err.clamp(min=0),
    "darker": err.clamp(max=0),
}
ev = Evaluator(EvalConfig(ref_num=2000), progress=False)
fp_stats = ev.inception_stats(fp)
print(f"{SPEC} {PRESET} draw {DRAW} {METHOD} n {N}: psnr {float(psnr(quant, fp).mean()):.2f} "
      f"haze {background_haze(quant, fp):.4f} (fp {background_haze(fp, fp):.4f}) "
      f"fp fid_data {ev.fid_to_reference(fp_stats):.1f}", flush=True)  # fmt: skip
energy = float(err.pow(2).sum())
for name, part in parts.items():
    hybrid = (fp + part).clamp(-1, 1)
    stats = ev.inception_stats(hybrid)
    share = float(part.pow(2).sum()) / energy
    print(f"  {name:9s} energy {share:6.3f} psnr {float(psnr(hybrid, fp).mean()):6.2f} "
          f"fid_fp {fid_from_features(stats, fp_stats):6.2f} fid_data {ev.fid_to_reference(stats):6.2f}",
          flush=True)  # fmt: skip
