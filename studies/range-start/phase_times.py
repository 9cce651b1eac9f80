"""Phase timings of run_ptq (where adpdm's extra calibration time goes).
Usage: PYTHONPATH=. .venv/bin/python studies/range-start/phase_times.py qdiffusion,adpdm w6a6"""

import collections
import copy
import functools
import sys
import time

import torch

import adpdm.calib.srm as S
import adpdm.ptq as P
import adpdm.recon.reconstruct as R
from adpdm.config import QuantConfig
from adpdm.models.loading import load_model
from adpdm.sampling import SamplerConfig

T = collections.defaultdict(float)
N = collections.Counter()


def wrap(mod, name):
    f = getattr(mod, name)

    @functools.wraps(f)
    def g(*a, **k):
        t = time.perf_counter()
        r = f(*a, **k)
        T[name] += time.perf_counter() - t
        N[name] += 1
        return r

    setattr(mod, name, g)


for m, n in [
    (P, "record_trajectories"),
    (P, "_observe"),
    (S, "step_signatures"),
    (S, "step_risks"),
    (P, "_reconstruct"),
    (P, "execution_order"),
    (P, "_model_judge"),
    (R, "capture_inputs"),
    (R, "capture_outputs"),
    (P, "freeze"),
]:
    wrap(m, n)
# judge closure timing
orig_mj = P._model_judge


def mj(*a, **k):
    j = orig_mj(*a, **k)

    def jj():
        t = time.perf_counter()
        r = j()
        T["judge()"] += time.perf_counter() - t
        N["judge()"] += 1
        return r

    return jj


P._model_judge = mj
torch.set_num_threads(2)
model = load_model("embedded:mnist", None)
preset = sys.argv[2] if len(sys.argv) > 2 else "w6a6"
for method in sys.argv[1].split(","):
    T.clear()
    N.clear()
    unet = copy.deepcopy(model.unet)
    calib = P.CalibConfig(
        num_samples=16, calib_steps=6, signature_samples=4, sampler=SamplerConfig(num_steps=20, seed=1)
    )
    t = time.perf_counter()
    res = P.run_ptq(
        unet,
        model.scheduler_config,
        method,
        QuantConfig.preset(preset, num_steps=20),
        calib,
        P.ReconConfig(iters=50),
        progress=False,
    )
    tot = time.perf_counter() - t
    print(method, preset, f"total {tot:.1f}s", {k: (round(v, 1), N[k]) for k, v in T.items()}, flush=True)
