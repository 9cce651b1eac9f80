"""Diagnostic: which range initialisation (weights / activations, min-max or Lp search) costs what.

At W8A8 on ``embedded:mnist`` round-to-nearest with min-max ranges beat every method that starts
from the Lp range search (the four-draw benchmark of 0.4.0: rtn 36.8 dB, adpdm 31.5, qdiffusion 28.2).
This script takes the no-reconstruction recipes apart: each variant fixes weight_init and act_init,
everything else as rtn, and is scored by PSNR against the FP samples of validation noise (seed 7,
never the benchmark's seed 0), on several calibration draws. Results:
``studies/range-start/results/init_study.json`` with the machine.

    PYTHONPATH=. .venv/bin/python studies/range-start/init_study.py --presets w8a8 w6a6 --draws 1 2
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import time
from pathlib import Path

import torch

from adpdm.config import QuantConfig
from adpdm.eval.metrics import psnr
from adpdm.methods import MethodSpec
from adpdm.models.loading import load_model
from adpdm.ptq import CalibConfig, run_ptq
from adpdm.sampling import SamplerConfig, sample
from adpdm.utils.resources import machine_description

OUT = os.path.relpath(Path(__file__).resolve().parent / "results" / "init_study.json")

VARIANTS = {
    "w-minmax a-minmax (rtn)": ("minmax", "minmax", 2.4),
    "w-lp a-minmax": ("lp", "minmax", 2.4),
    "w-minmax a-lp": ("minmax", "lp", 2.4),
    "w-lp a-lp": ("lp", "lp", 2.4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded:mnist")
    parser.add_argument("--presets", nargs="+", default=["w8a8"])
    parser.add_argument("--draws", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seed", type=int, default=7, help="validation noise seed (not 0, the benchmark's)")
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model = load_model(args.model)
    sampler = SamplerConfig(num_steps=args.steps, seed=args.seed, guidance_scale=model.default_guidance)
    labels = None if model.num_classes is None else torch.arange(args.num) % model.num_classes
    fp = sample(
        model.unet,
        model.scheduler_config,
        args.num,
        sampler,
        labels,
        model.num_classes,
        model.null_class,
        progress=False,
    ).images
    rows = []
    for preset in args.presets:
        for draw in args.draws:
            for name, (w, a, p) in VARIANTS.items():
                spec = MethodSpec(name, "uniform", w, a, p, False, 1, False, split_skip=False)
                calib = CalibConfig(num_samples=16, calib_steps=6, signature_samples=4,
                                    sampler=SamplerConfig(num_steps=args.steps, seed=draw,
                                                          guidance_scale=model.default_guidance))  # fmt: skip
                start = time.perf_counter()
                res = run_ptq(copy.deepcopy(model.unet), model.scheduler_config, spec,
                              QuantConfig.preset(preset, num_steps=args.steps), calib,
                              num_classes=model.num_classes, null_class=model.null_class, progress=False)  # fmt: skip
                q = sample(res.model, model.scheduler_config, args.num, sampler, labels, model.num_classes,
                           model.null_class, progress=False).images  # fmt: skip
                value = float(psnr(q, fp).clamp_max(100).mean())
                row = {"preset": preset, "draw": draw, "variant": name, "psnr": value,
                       "seconds": time.perf_counter() - start}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)  # noqa: T201 - a script's progress
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "machine": machine_description()}, indent=2))


if __name__ == "__main__":
    main()
