"""Do more timestep groups pay? adpdm with G groups against G', paired over calibration draws, on the
benchmark's calibration and reconstruction settings, scored on validation noise (seed 7), never the
benchmark's evaluation noise.

Usage: PYTHONPATH=. .venv/bin/python studies/group-count/group_count.py MODEL PRESET G[,G...] DRAWS [num]
(DRAWS: comma-separated calibration seeds), e.g. ``embedded:mnist w8a6 4,8 1,2,3,4``. Prints one line per run:
PSNR against FP (mean over samples and its standard error), FID against FP, what the sampler check kept and the
calibration time.
"""

import copy
import logging
import sys
from pathlib import Path

from adpdm.config import QuantConfig
from adpdm.eval.evaluate import EvalConfig, Evaluator
from adpdm.eval.metrics import psnr
from adpdm.ptq import run_ptq
from adpdm.sampling import sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fid-speckle"))
from haze import bench_calibration, validation_setup  # noqa: E402

logging.basicConfig(level=logging.WARNING)
spec, preset = sys.argv[1], sys.argv[2]
groups, draws = [int(g) for g in sys.argv[3].split(",")], [int(d) for d in sys.argv[4].split(",")]
N = int(sys.argv[5]) if len(sys.argv) > 5 else 128
K = 20

model, classes, sampler, fp = validation_setup(spec, N, K)
sched, guidance = model.scheduler_config, sampler.guidance_scale
ev = Evaluator(EvalConfig(ref_num=2000), progress=False)
fp_stats = ev.fp_inception_stats(fp)
for draw in draws:  # draws outer: every finished draw is a paired comparison of the G values
    calib, recon = bench_calibration(draw, K, guidance)
    for g in groups:
        unet = copy.deepcopy(model.unet)
        res = run_ptq(unet, sched, "adpdm", QuantConfig.preset(preset, num_steps=K, groups=g), calib, recon,
                      progress=False, **classes)  # fmt: skip
        x = sample(unet, sched, N, sampler, progress=False, **classes).images
        values = psnr(x, fp).clamp(max=100)
        fid_fp = ev.evaluate(x, fp_images=fp, fp_stats=fp_stats).fid_fp
        out = res.report.get("outcome") or {}
        print(f"{spec} {preset} draw {draw} G {g}: psnr {float(values.mean()):.2f} "
              f"(se {float(values.std() / len(values) ** 0.5):.2f}) fid_fp {fid_fp:.1f} "
              f"kept {out.get('kept')} {res.report['calib_seconds']:.0f}s", flush=True)  # fmt: skip
