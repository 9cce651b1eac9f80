"""Which layers' activation quantizers light the far background? One calibrated model (the benchmark's settings,
calibration draw DRAW), sampled on validation noise (seed 7) with the activation quantizers of one layer family
turned off ("off") or with only that family's on ("only"; weights stay quantized everywhere in both).

The measure is the share of far-background pixels (3 or more pixels from the FP sample's ink) lit to 8-bit level 1
or more, the level an image file and the FID's Inception input give them; the FP samples' own share is printed
first. It locates scattered lit pixels only where they are speckle, not a uniform lift: ``lit_synthetic.py`` shows
the FID follows the speckle (``adpdm.eval.metrics.background_speckle``), not the count.
With FAMILY (e.g. up_blocks.2) the quantizers of that family are taken one at a time instead.
Usage: PYTHONPATH=. .venv/bin/python studies/fid-speckle/lit_by_layer.py PRESET DRAW [METHOD] [num] [MODEL]
       [FAMILY]
"""

import copy
import logging
import sys
from collections import defaultdict

import torch
from haze import bench_calibration, lit_share, study_args, validation_setup

from adpdm.config import QuantConfig
from adpdm.eval.metrics import background_haze, psnr
from adpdm.ptq import run_ptq
from adpdm.quantize import act_quantizers
from adpdm.sampling import sample
from adpdm.state import QuantState

logging.basicConfig(level=logging.WARNING)
torch.set_num_threads(1)
PRESET, DRAW, METHOD, N, SPEC = study_args(256)
WITHIN = sys.argv[6] if len(sys.argv) > 6 else None


def family(name: str) -> str:
    """The layer family of an activation quantizer: a down/up block, the mid block, or a top-level module;
    within ``WITHIN``, the quantizer itself."""
    if WITHIN is not None:
        return name if name.startswith(WITHIN + ".") else "rest"
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] in ("down_blocks", "up_blocks") else parts[0]


model, classes, sampler, fp = validation_setup(SPEC, N)
calib, recon = bench_calibration(DRAW, guidance=sampler.guidance_scale)
unet = copy.deepcopy(model.unet)
run_ptq(unet, model.scheduler_config, METHOD, QuantConfig.preset(PRESET, num_steps=20), calib, recon,
        progress=False, **classes)  # fmt: skip
quantizers = list(act_quantizers(unet))
families = defaultdict(list)
for name, q in quantizers:
    families[family(name)].append(q)
states = {id(q): q.state for _, q in quantizers}


def run(label: str, on: set[int]) -> None:
    for _, q in quantizers:
        q.state = states[id(q)] if id(q) in on else QuantState.FP
    x = sample(unet, model.scheduler_config, N, sampler, progress=False, **classes).images
    print(f"  {label:28s} lit {lit_share(x, fp):.3f} haze {background_haze(x, fp):.4f} "
          f"psnr {float(psnr(x, fp).mean()):.2f}", flush=True)  # fmt: skip


every = {id(q) for _, q in quantizers}
print(f"{SPEC} {PRESET} draw {DRAW} {METHOD} n {N}: fp lit {lit_share(fp, fp):.3f}", flush=True)
run("all activations quantized", every)
run("no activation quantized", set())
for fam, qs in families.items():
    ids = {id(q) for q in qs}
    run(f"off: {fam} ({len(qs)})", every - ids)
    run(f"only: {fam}", ids)
