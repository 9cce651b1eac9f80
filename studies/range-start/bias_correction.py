"""Diagnostic: is the W8A8 gap between Lp and min-max activation ranges the systematic (mean) part of the
denoiser's error? Subtract the mean eps error of each sampling step (per output channel, or per output
element), estimated on the 16 recorded calibration trajectories, and score closed-loop PSNR against FP on
32 fresh trajectories of the calibration seed.
Usage: PYTHONPATH=. .venv/bin/python studies/range-start/bias_correction.py w8a8"""

import copy
import sys
from types import SimpleNamespace

import torch
from common import _minmax_ranges, _ranges, _set

import adpdm
import adpdm.ptq as P
from adpdm.calib.data import forward_rows, record_trajectories
from adpdm.config import QuantConfig
from adpdm.context import current_step
from adpdm.eval.metrics import psnr
from adpdm.methods import get_method
from adpdm.models.loading import load_model
from adpdm.quantize import quantization_disabled
from adpdm.sampling import SamplerConfig, sample

torch.set_num_threads(1)
model = load_model("embedded:mnist", None)
sched = model.scheduler_config
preset = sys.argv[1] if len(sys.argv) > 1 else "w8a8"
K, N = 20, 32


class Corrected(torch.nn.Module):
    def __init__(self, unet, bias):
        super().__init__()
        self.unet, self.bias = unet, bias

    def forward(self, x, t, **kw):
        out = self.unet(x, t, **kw).sample
        k = current_step()
        return SimpleNamespace(sample=out - self.bias[int(k) if not torch.is_tensor(k) else k])


for draw in (1, 2):
    unet = copy.deepcopy(model.unet)
    adpdm.quantize_model(unet, get_method("qdiffusion").quant_config(QuantConfig.preset(preset, num_steps=K)))
    data = record_trajectories(unet, sched, 16, SamplerConfig(num_steps=K, seed=draw), progress=False)
    P._observe(unet, data, 64, torch.device("cpu"))
    with quantization_disabled(unet):
        fp_rows = forward_rows(unet, data, 64, torch.device("cpu"))
    fp = sample(model.unet, sched, N, SamplerConfig(num_steps=K, seed=draw), progress=False, first=16).images
    rec, mm = _ranges(unet), _minmax_ranges(unet)
    line = []
    for name, acts in (("lp", rec), ("minmax", mm)):
        _set(unet, rec["weights"], acts["activations"])
        diff = forward_rows(unet, data, 64, torch.device("cpu")) - fp_rows  # (rows, C, H, W)
        steps = data.step
        per_elem = torch.stack([diff[steps == k].mean(0) for k in range(K)])  # (K, C, H, W)
        per_chan = per_elem.mean((2, 3), keepdim=True).expand_as(per_elem).contiguous()
        for label, bias in (("none", torch.zeros_like(per_elem)), ("chan", per_chan), ("elem", per_elem)):
            imgs = sample(Corrected(unet, bias), sched, N, SamplerConfig(num_steps=K, seed=draw), progress=False,
                          first=16, sample_shape=tuple(fp.shape[1:])).images  # fmt: skip
            line.append(f"{name}/{label} {float(psnr(imgs, fp).mean()):.2f}")
    print(preset, "draw", draw, " | ".join(line), flush=True)
