"""Which sampling steps make the background haze of quantized samples? The quantized denoiser serves some
steps and the FP one the others (same noise, validation seed 7); the haze and the FID against data of each mix.

"quant [a, b)" runs the quantized model on steps a..b-1 (step 0 is the noisiest) and FP elsewhere.
Usage: PYTHONPATH=. .venv/bin/python studies/fid-speckle/haze_by_step.py [MODEL] [PRESET] [METHOD] [num]
"""

import copy
import logging
import sys

from haze import bench_calibration, faint_share, far_background
from torch import nn

from adpdm.config import QuantConfig
from adpdm.eval.evaluate import EvalConfig, Evaluator
from adpdm.eval.metrics import background_haze, psnr
from adpdm.models.loading import load_model
from adpdm.ptq import run_ptq
from adpdm.sampling import SamplerConfig, sample

logging.basicConfig(level=logging.WARNING)
SPEC = sys.argv[1] if len(sys.argv) > 1 else "embedded:mnist"
PRESET = sys.argv[2] if len(sys.argv) > 2 else "w4a8"
METHOD = sys.argv[3] if len(sys.argv) > 3 else "adpdm"
N = int(sys.argv[4]) if len(sys.argv) > 4 else 256
K = 20


class Mix(nn.Module):
    """The quantized denoiser on steps [lo, hi), the FP one elsewhere; the sampler's callback sets the step."""

    def __init__(self, fp: nn.Module, quant: nn.Module, lo: int, hi: int) -> None:
        super().__init__()
        self.fp, self.quant, self.lo, self.hi, self.step = fp, quant, lo, hi, 0
        self.config = fp.config

    def set_step(self, k: int, t, inputs) -> None:
        self.step = k

    def forward(self, *args, **kwargs):
        return (self.quant if self.lo <= self.step < self.hi else self.fp)(*args, **kwargs)


model = load_model(SPEC, None)
sched = model.scheduler_config
guidance = model.default_guidance if model.num_classes else 1.0
classes = dict(num_classes=model.num_classes, null_class=model.null_class)
sampler = SamplerConfig(num_steps=K, seed=7, guidance_scale=guidance)
calib, recon = bench_calibration(1, K, guidance)  # the benchmark's, draw 1
quant = copy.deepcopy(model.unet)
qcfg = QuantConfig.preset(PRESET, num_steps=K)
run_ptq(quant, sched, METHOD, qcfg, calib, recon, progress=False, **classes)
ev = Evaluator(EvalConfig(ref_num=2000), progress=False)
fp = sample(model.unet, sched, N, sampler, progress=False, **classes).images
background = far_background(fp)
for lo, hi in ((0, 0), (0, K), (0, 10), (10, K), (15, K), (19, K)):
    mix = Mix(model.unet, quant, lo, hi)
    x = sample(mix, sched, N, sampler, progress=False, callback=mix.set_step, **classes).images
    fid = ev.evaluate(x).fid_data
    print(f"{SPEC} {PRESET} {METHOD} quant [{lo:2d}, {hi:2d}): psnr {float(psnr(x, fp).clamp(max=100).mean()):.2f} "
          f"haze {background_haze(x, fp):.4f} faint {faint_share(x):.4f} fid_data {fid:.1f}", flush=True)  # fmt: skip
