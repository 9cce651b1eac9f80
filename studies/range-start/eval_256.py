"""W8A8 range starts scored on 64 / 128 / 256 validation samples (seed 7), paired differences and standard errors.
Usage: PYTHONPATH=. .venv/bin/python studies/range-start/eval_256.py"""

import copy

import torch
from common import _minmax_ranges, _ranges, _set

import adpdm
import adpdm.ptq as P
from adpdm.calib.data import record_trajectories
from adpdm.config import QuantConfig
from adpdm.eval.metrics import psnr
from adpdm.methods import get_method
from adpdm.models.loading import load_model
from adpdm.sampling import SamplerConfig, sample

torch.set_num_threads(2)
model = load_model("embedded:mnist", None)
sched = model.scheduler_config
N = 256
fp = sample(model.unet, sched, N, SamplerConfig(num_steps=20, seed=7), progress=False).images
for draw in (1, 2):
    unet = copy.deepcopy(model.unet)
    adpdm.quantize_model(unet, get_method("qdiffusion").quant_config(QuantConfig.preset("w8a8", num_steps=20)))
    data = record_trajectories(unet, sched, 16, SamplerConfig(num_steps=20, seed=draw), progress=False)
    P._observe(unet, data, 64, torch.device("cpu"))
    rec, mm = _ranges(unet), _minmax_ranges(unet)
    res = {}
    for name, (w, a) in {"rr": (rec, rec), "rm": (rec, mm), "mm": (mm, mm)}.items():
        _set(unet, w["weights"], a["activations"])
        res[name] = psnr(sample(unet, sched, N, SamplerConfig(num_steps=20, seed=7), progress=False).images, fp)
    for a, b in (("rm", "rr"), ("mm", "rr")):
        d = res[a] - res[b]
        for n in (64, 128, 256):
            print(
                f"draw {draw} {a}-{b} n={n}: mean {float(res[a][:n].mean()):.2f} vs {float(res[b][:n].mean()):.2f} "
                f"diff {float(d[:n].mean()):.2f} se {float(d[:n].std() / n**0.5):.2f}",
                flush=True,
            )
    print("per-sample psnr std", float(res["rr"].std()), "min", float(res["rr"].min()))
