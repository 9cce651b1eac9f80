"""Measures of the background haze of the FID study (the haze itself: ``adpdm.eval.metrics.background_haze``),
and the benchmark's calibration of one draw.

The scripts of this folder import it by name (Python puts a script's own folder first on ``sys.path``);
``studies/group-count`` and ``studies/row-error`` add this folder to ``sys.path`` by a path relative to their file.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import torch

from adpdm.bench import BenchConfig
from adpdm.models.loading import DiffusionModel, load_model
from adpdm.ptq import CalibConfig, ReconConfig
from adpdm.sampling import SamplerConfig, sample

VALIDATION_SEED = 7  # the studies' noise; the benchmark evaluates on seed 0


def far_background(fp: torch.Tensor) -> torch.Tensor:
    """Pixels 3 or more pixels away from any ink of the FP samples, so a moved stroke is not counted as haze."""
    return torch.nn.functional.max_pool2d((fp > -0.95).float(), 7, stride=1, padding=3) == 0


def lit_share(x: torch.Tensor, fp: torch.Tensor) -> float:
    """Share of the FP samples' far-background pixels at 8-bit level 1 or more in ``x`` (as an image file and the
    FID's Inception input give them)."""
    return float((torch.round((x + 1) * 127.5) >= 1)[far_background(fp)].float().mean())


def faint_share(x: torch.Tensor) -> float:
    """Share of the pixels barely above black, in (-0.98, -0.8)."""
    return float(((x > -0.98) & (x < -0.8)).float().mean())


def bench_calibration(draw: int, steps: int = 20, guidance: float = 1.0) -> tuple[CalibConfig, ReconConfig]:
    """The benchmark's calibration and reconstruction settings for calibration draw ``draw``."""
    bench = BenchConfig()
    sampler = SamplerConfig(num_steps=steps, seed=draw, guidance_scale=guidance)
    return dataclasses.replace(bench.calib, sampler=sampler), bench.recon


def validation_setup(
    spec: str, num: int, steps: int = 20
) -> tuple[DiffusionModel, dict[str, Any], SamplerConfig, torch.Tensor]:
    """The model, its class arguments for ``sample``/``run_ptq``, the validation sampler (seed 7, the model's
    guidance) and the FP samples of ``num`` validation noises."""
    model = load_model(spec, None)
    classes = dict(num_classes=model.num_classes, null_class=model.null_class)
    guidance = model.default_guidance if model.num_classes else 1.0
    sampler = SamplerConfig(num_steps=steps, seed=VALIDATION_SEED, guidance_scale=guidance)
    fp = sample(model.unet, model.scheduler_config, num, sampler, progress=False, **classes).images
    return model, classes, sampler, fp


def study_args(default_num: int) -> tuple[str, int, str, int, str]:
    """PRESET DRAW [METHOD] [num] [MODEL] from a study's command line (defaults adpdm, ``default_num``,
    embedded:mnist)."""
    argv = sys.argv[1:] + [None] * 5
    if argv[0] is None or argv[1] is None:
        raise SystemExit(f"usage: {sys.argv[0]} PRESET DRAW [METHOD] [num] [MODEL]")
    return argv[0], int(argv[1]), argv[2] or "adpdm", int(argv[3] or default_num), argv[4] or "embedded:mnist"
