"""Per-step one-step relative error and its systematic part (error of the mean) at W8A8, Lp vs min-max activations.
Usage: PYTHONPATH=. .venv/bin/python studies/range-start/per_step_error.py"""

import copy

import torch
from common import _minmax_ranges, _ranges, _set

import adpdm
import adpdm.ptq as P
from adpdm.calib.data import forward_rows, record_trajectories
from adpdm.config import QuantConfig
from adpdm.methods import get_method
from adpdm.models.loading import load_model
from adpdm.quantize import quantization_disabled
from adpdm.sampling import SamplerConfig

torch.set_num_threads(2)
model = load_model("embedded:mnist", None)
sched = model.scheduler_config
for draw in (1, 2):
    unet = copy.deepcopy(model.unet)
    adpdm.quantize_model(unet, get_method("qdiffusion").quant_config(QuantConfig.preset("w8a8", num_steps=20)))
    data = record_trajectories(unet, sched, 16, SamplerConfig(num_steps=20, seed=draw), progress=False)
    P._observe(unet, data, 64, torch.device("cpu"))
    with quantization_disabled(unet):
        fp = forward_rows(unet, data, 64, torch.device("cpu")).flatten(1)
    rec, mm = _ranges(unet), _minmax_ranges(unet)
    out = {}
    for name, (w, a) in {"rr": (rec, rec), "rm": (rec, mm)}.items():
        _set(unet, w["weights"], a["activations"])
        q = forward_rows(unet, data, 64, torch.device("cpu")).flatten(1)
        rel = (q - fp).pow(2).sum(1) / fp.pow(2).sum(1)
        bias = ((q - fp).mean(0)).pow(2).sum()  # not per step
        out[name] = torch.stack([rel[data.step == k].mean() for k in range(20)])
        # per-step mean error vector (systematic part) relative
        sys_ = torch.stack(
            [
                ((q - fp)[data.step == k].mean(0)).pow(2).sum() / fp[data.step == k].pow(2).sum(1).mean()
                for k in range(20)
            ]
        )
        out[name + "_sys"] = sys_
    print(f"draw {draw} step: " + " ".join(f"{k:6d}" for k in range(20)))
    for n in out:
        print(f"{n:7s} " + " ".join(f"{1e4 * float(v):6.2f}" for v in out[n]), flush=True)
