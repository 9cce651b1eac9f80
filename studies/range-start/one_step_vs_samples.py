"""W8A8 range starts: the one-step judge, closed-loop PSNR on 4 / 16 calibration-noise trajectories and on
64 validation samples (seed 7).
Usage: PYTHONPATH=. .venv/bin/python studies/range-start/one_step_vs_samples.py w8a8"""

import copy
import sys

import torch
from common import _minmax_ranges, _ranges, _set

import adpdm
import adpdm.ptq as P
from adpdm.calib.data import record_trajectories
from adpdm.config import QuantConfig
from adpdm.eval.metrics import psnr
from adpdm.methods import get_method
from adpdm.models.loading import load_model
from adpdm.recon.reconstruct import heldout_trajectories
from adpdm.sampling import SamplerConfig, eps_sensitivity, sample

torch.set_num_threads(2)
model = load_model("embedded:mnist", None)
sched = model.scheduler_config
preset = sys.argv[1]


def closed(unet, n, seed, first):
    return sample(unet, sched, n, SamplerConfig(num_steps=20, seed=seed), progress=False, first=first).images


fp_eval = closed(model.unet, 64, 7, 0)
for draw in (1, 2):
    unet = copy.deepcopy(model.unet)
    cfg = get_method("qdiffusion").quant_config(QuantConfig.preset(preset, num_steps=20))
    adpdm.quantize_model(unet, cfg)
    data = record_trajectories(unet, sched, 16, SamplerConfig(num_steps=20, seed=draw), progress=False)
    P._observe(unet, data, 64, torch.device("cpu"))
    rows, held = heldout_trajectories(data, [0, 4, 8, 12, 16, 19], 0.25, 123)
    judge = P._model_judge(
        unet, rows.subset(held), eps_sensitivity(sched, SamplerConfig(num_steps=20)), 64, torch.device("cpu")
    )
    fp_cl = closed(model.unet, 16, draw, 16)
    rec, mm = _ranges(unet), _minmax_ranges(unet)
    for w in ("recipe", "minmax"):
        for a in ("recipe", "minmax"):
            _set(unet, (rec if w == "recipe" else mm)["weights"], (rec if a == "recipe" else mm)["activations"])
            j = judge()
            cl = closed(unet, 16, draw, 16)
            cl4 = float(psnr(cl[:4], fp_cl[:4]).mean())
            cl16 = float(psnr(cl, fp_cl).mean())
            ev = float(psnr(closed(unet, 64, 7, 0), fp_eval).mean())
            print(
                f"{preset} draw {draw} w={w:6s} a={a:6s} judge {j:.5g} closed4 {cl4:.2f} closed16 {cl16:.2f} "
                f"eval64 {ev:.2f}",
                flush=True,
            )
