"""Closed-loop PSNR of the four range starts on 32 / 64 fresh trajectories of the calibration seed.
Usage: PYTHONPATH=. .venv/bin/python studies/range-start/closed_loop_judge.py w8a8"""

import copy
import sys
import time

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

preset = sys.argv[1]
for draw in (1, 2):
    unet = copy.deepcopy(model.unet)
    adpdm.quantize_model(unet, get_method("qdiffusion").quant_config(QuantConfig.preset(preset, num_steps=20)))
    data = record_trajectories(unet, sched, 16, SamplerConfig(num_steps=20, seed=draw), progress=False)
    P._observe(unet, data, 64, torch.device("cpu"))
    fp = sample(model.unet, sched, 64, SamplerConfig(num_steps=20, seed=draw), progress=False, first=16).images
    rec, mm = _ranges(unet), _minmax_ranges(unet)
    line = []
    for w in ("recipe", "minmax"):
        for a in ("recipe", "minmax"):
            _set(unet, (rec if w == "recipe" else mm)["weights"], (rec if a == "recipe" else mm)["activations"])
            t = time.perf_counter()
            p = psnr(
                sample(unet, sched, 64, SamplerConfig(num_steps=20, seed=draw), progress=False, first=16).images, fp
            )
            line.append(
                f"{w[0]}{a[0]}: 32={float(p[:32].mean()):.2f} 64={float(p.mean()):.2f} ({time.perf_counter() - t:.1f}s)"
            )
    print(preset, "draw", draw, " | ".join(line), flush=True)
