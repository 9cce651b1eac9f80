"""How much of the spread between calibration draws is the reconstruction's own randomness? One calibration
draw, several reconstruction seeds (row sampling and held-out split), scored on validation noise (seed 7).

Usage: PYTHONPATH=. .venv/bin/python studies/reconstruction-seed/repeat_seed.py \
    PRESET DRAW METHOD[,METHOD] SEED[,SEED...] [num]
Prints one line per run: PSNR against FP, what the sampler check kept, its scores and the units kept.
"""

import copy
import dataclasses
import sys

import torch

from adpdm.bench import BenchConfig
from adpdm.config import QuantConfig
from adpdm.eval.metrics import psnr
from adpdm.models.loading import load_model
from adpdm.ptq import run_ptq
from adpdm.sampling import SamplerConfig, sample

torch.set_num_threads(1)
preset, draw = sys.argv[1], int(sys.argv[2])
methods, seeds = sys.argv[3].split(","), [int(s) for s in sys.argv[4].split(",")]
N = int(sys.argv[5]) if len(sys.argv) > 5 else 128

model = load_model("embedded:mnist", None)
sched = model.scheduler_config
sampler = SamplerConfig(num_steps=20, seed=7)
fp = sample(model.unet, sched, N, sampler, progress=False).images
bench = BenchConfig()  # the benchmark's calibration and reconstruction settings
calib = dataclasses.replace(bench.calib, sampler=SamplerConfig(num_steps=20, seed=draw))
for method in methods:
    for seed in seeds:
        unet = copy.deepcopy(model.unet)
        res = run_ptq(unet, sched, method, QuantConfig.preset(preset, num_steps=20), calib,
                      dataclasses.replace(bench.recon, seed=seed), progress=False)  # fmt: skip
        value = float(psnr(sample(unet, sched, N, sampler, progress=False).images, fp).mean())
        out = res.report.get("outcome") or {}
        kept = "".join("R" if u.get("kept") == "reconstructed" else "." for u in res.report.get("unit_losses", []))
        scores = {k: round(v, 2) for k, v in (out.get("psnr") or {}).items()}
        print(f"{preset} draw {draw} {method:10s} seed {seed}: psnr {value:.2f} kept {out.get('kept')} "
              f"judge {scores} units {kept} {res.report['calib_seconds']:.0f}s", flush=True)  # fmt: skip
