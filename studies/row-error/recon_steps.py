"""Why does reconstruction lower every unit's held-out error and still make the samples worse than its start?

At the activation-limited presets the sampler check keeps the min-max start in most runs of the benchmark (e.g.
`embedded:mnist` W8A6 adpdm draw 2: samples 31.3 dB from FP with the start, 26.1 dB reconstructed, while 11 of 26
units kept a result with a lower held-out error). Reconstruction sees only the calibration steps' rows. This
script measures, at the sampler check's decision, the teacher-forced output error of the start and of the
reconstructed model at every sampling step (the calibration steps marked), on FP trajectories of validation noise
(seed 7), and the PSNR of their samples against FP on the same noise.

Usage: PYTHONPATH=. .venv/bin/python studies/row-error/recon_steps.py MODEL PRESET METHOD DRAW [num]
(it was also run with the row error "relative", a ``ReconConfig`` option that 0.6.0 deleted).
"""

import copy
import logging
import sys
from pathlib import Path

import torch

from adpdm.calib.data import record_trajectories
from adpdm.compare import _denoise
from adpdm.config import QuantConfig
from adpdm.eval.metrics import psnr
from adpdm.ptq import run_ptq
from adpdm.recon import start as start_module
from adpdm.sampling import sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fid-speckle"))
from haze import bench_calibration, validation_setup  # noqa: E402

logging.basicConfig(level=logging.WARNING)
spec, preset, method, draw = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
N = int(sys.argv[5]) if len(sys.argv) > 5 else 64
K = 20

model, classes, sampler, fp = validation_setup(spec, N, K)
sched, guidance = model.scheduler_config, sampler.guidance_scale
traj = record_trajectories(model.unet, sched, 16, sampler, progress=False, **classes)
ref = _denoise(model.unet, traj)


def per_step(unet: torch.nn.Module) -> torch.Tensor:
    """Relative squared output error ||q - fp||^2 / ||fp||^2 of every step, teacher-forced."""
    out = _denoise(unet, traj)
    num = torch.zeros(K).index_add_(0, traj.step, (out - ref).flatten(1).pow(2).sum(1))
    den = torch.zeros(K).index_add_(0, traj.step, ref.flatten(1).pow(2).sum(1))
    return num / den


measured: dict[str, tuple[torch.Tensor, float]] = {}
tables: dict[str, dict[str, list[int]]] = {}
original_end = start_module.SamplerCheck.end


def end(self, unet):  # noqa: ANN001, ANN202
    """Measure the reconstructed model and its start, then let the check decide as it does."""
    recon_state = copy.deepcopy(unet.state_dict())
    for name, state in (("reconstructed", recon_state), ("start", self.state)):
        unet.load_state_dict(state)
        x = sample(unet, sched, N, sampler, progress=False, **classes).images
        measured[name] = (per_step(unet), float(psnr(x, fp).clamp(max=100).mean()))
        tables[name] = {k: v.tolist() for k, v in state.items() if k.endswith("table")}
    unet.load_state_dict(recon_state)
    return original_end(self, unet)


start_module.SamplerCheck.end = end
calib, recon = bench_calibration(draw, K, guidance)
res = run_ptq(copy.deepcopy(model.unet), sched, method, QuantConfig.preset(preset, num_steps=K), calib, recon,
              progress=False, **classes)  # fmt: skip
selected = res.report["selected_steps"]
out = res.report["outcome"]
kept = "".join("R" if u["kept"] == "reconstructed" else "." for u in res.report["unit_losses"])
judged = {k: round(v, 2) for k, v in out["psnr"].items()}
print(f"{spec} {preset} {method} draw {draw} start {out['start']}, judge {judged}, "
      f"kept {out['kept']}; units {kept}; selected steps {selected}")  # fmt: skip
(es, ps), (er, pr) = measured["start"], measured["reconstructed"]
print(f"  validation PSNR vs FP: start {ps:.2f}, reconstructed {pr:.2f}")
print("  step | start | reconstructed | ratio")
for k in range(K):
    mark = "*" if k in selected else " "
    print(f"  {k:2d}{mark} | {es[k]:.3e} | {er[k]:.3e} | {er[k] / es[k]:.3f}")
for key, table in tables["reconstructed"].items():
    if table != tables["start"][key]:
        print(f"  step->group table {key}: start {tables['start'][key]}, reconstructed {table}")
sel = torch.tensor([k in selected for k in range(K)])
print(f"  mean ratio: calibration steps {float((er / es)[sel].mean()):.3f}, others {float((er / es)[~sel].mean()):.3f}")
