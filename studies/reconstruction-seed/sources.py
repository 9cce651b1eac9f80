"""Which part of the reconstruction's randomness moves the result: the row sampling (the minibatches of every
unit's optimisation) or the held-out split (which calibration trajectories are held out to judge each unit)?
One calibration draw; one source varied at a time, the other kept at seed 0; scored on validation noise (seed 7).

Usage: PYTHONPATH=. .venv/bin/python studies/reconstruction-seed/sources.py \
    PRESET DRAW METHOD[,METHOD] rows|split SEED[,SEED...] [num]
Environment: ITERS, BATCH (reconstruction iterations per unit and rows per iteration; default the benchmark's),
VOTES (ReconConfig.votes, deleted after its study: run at commit 94dad25), MOMENTUM (ReconConfig.sign_momentum,
deleted after its study: run at commit f88ca88).
Prints one line per run: PSNR against FP, what the sampler check kept, and per unit `R` (kept its
reconstruction) or `.` (kept its start).
"""

import copy
import dataclasses
import os
import sys

import torch

import adpdm.ptq
import adpdm.recon.reconstruct as recon
from adpdm.bench import BenchConfig
from adpdm.config import QuantConfig
from adpdm.eval.metrics import psnr
from adpdm.models.loading import load_model
from adpdm.ptq import run_ptq
from adpdm.sampling import SamplerConfig, sample

torch.set_num_threads(1)
preset, draw, methods, source = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
seeds = [int(s) for s in sys.argv[5].split(",")]
N = int(sys.argv[6]) if len(sys.argv) > 6 else 128
if source not in ("rows", "split"):
    raise SystemExit("source must be rows or split")

split_seed = {"value": 0}
rows_seed = {"value": 0}
_split = adpdm.ptq.heldout_trajectories
adpdm.ptq.heldout_trajectories = lambda data, steps, fraction, _seed: _split(
    data, steps, fraction, split_seed["value"] + recon.SPLIT_STREAM
)
recon._unit_seed = lambda cfg, index: rows_seed["value"] * 100_003 + index

model = load_model("embedded:mnist", None)
sched = model.scheduler_config
sampler = SamplerConfig(num_steps=20, seed=7)
fp = sample(model.unet, sched, N, sampler, progress=False).images
bench = BenchConfig()  # the benchmark's calibration and reconstruction settings
calib = dataclasses.replace(bench.calib, sampler=SamplerConfig(num_steps=20, seed=draw))
recon_cfg = dataclasses.replace(
    bench.recon, iters=int(os.environ.get("ITERS", bench.recon.iters)),
    batch_size=int(os.environ.get("BATCH", bench.recon.batch_size)),
    **({"votes": int(os.environ["VOTES"])} if "VOTES" in os.environ else {}),
    **({"sign_momentum": float(os.environ["MOMENTUM"])} if "MOMENTUM" in os.environ else {}),
)  # fmt: skip
for method in methods:
    for seed in seeds:
        (rows_seed if source == "rows" else split_seed)["value"] = seed
        unet = copy.deepcopy(model.unet)
        res = run_ptq(unet, sched, method, QuantConfig.preset(preset, num_steps=20), calib, recon_cfg, progress=False)
        value = float(psnr(sample(unet, sched, N, sampler, progress=False).images, fp).mean())
        out = res.report.get("outcome") or {}
        kept = "".join("R" if u.get("kept") == "reconstructed" else "." for u in res.report.get("unit_losses", []))
        scores = {k: round(v, 2) for k, v in (out.get("psnr") or {}).items()}
        print(f"{preset} draw {draw} {method:10s} iters {recon_cfg.iters} batch {recon_cfg.batch_size} "
              f"momentum {getattr(recon_cfg, 'sign_momentum', 0.0)} votes {getattr(recon_cfg, 'votes', 1)} "
              f"{source} seed {seed}: psnr {value:.2f} kept {out.get('kept')} judge {scores} units {kept} "
              f"{res.report['calib_seconds']:.0f}s", flush=True)  # fmt: skip
