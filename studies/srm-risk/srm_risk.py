"""Should SRM's empirical risk be measured on the sampler's scale? A validation study.

SRM (`adpdm.calib.srm`) scores each step by its risk r_k, the relative output error of the initial quantized
model, scaled to [0, 1] by min-max. On the embedded models the last step's relative error is 60x or more any
other step's (its output has little energy), so the scaled risk is 1 there and below 0.02 everywhere else: the
risk term only ever picks the last step, in every draw, and the MMD term picks the rest. The reconstruction
weighs each row by b_k^2 (how far an error at step k moves the sampler; ``studies/row-error``), and b_19^2 is
about 1e-4 of b_0^2: one calibration step of six then carries almost no weight. This study measures the risk on
the same scale as the rows and the judges, r_k = b_k^2 * relative error_k (the candidate), against the default.

adpdm only (the other methods do not use SRM), the benchmark's settings, W8A6 / W4A8 / W4A6, calibration
draws 1-2, both embedded models, 128 samples of validation noise seed 7 (the benchmark evaluates on seed 0),
with the per-step teacher-forced error (--diagnose). The default's rows are those of
`studies/row-error/validation_sampler_rows.sh` (`studies/row-error/results/val_rows_sampler.json`, same
settings, one thread; its code differs from this one only by the table check's step subset, 386015b: the same
comparison, in another floating-point order).

Usage: OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python studies/srm-risk/srm_risk.py
Results: studies/srm-risk/results/val_srm_sampler_risk.{json,md}, figures in studies/srm-risk/figures/
(resumable). On 0.6.0 (commit 1746c2b) the candidate lost: -0.18 dB PSNR against FP on average, 4 of 12 pairs
up, background haze up in 9 of 12 runs.
"""

import logging
import os
from pathlib import Path

import torch

import adpdm.calib.srm as srm
from adpdm.bench import BenchConfig, run_benchmark
from adpdm.models.loading import load_model
from adpdm.sampling import SamplerConfig, eps_sensitivity

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
MODELS = ("embedded:mnist", "embedded:mnist-cond")
STUDY = os.path.relpath(Path(__file__).resolve().parent)  # results/ and figures/ go here
relative_risks = srm.step_risks
weights: dict[str, torch.Tensor] = {}


def sampler_risks(model, data, batch, device):  # noqa: ANN001, ANN201
    """b_k^2 times the relative output error of step k."""
    return relative_risks(model, data, batch, device) * weights["b2"]


srm.step_risks = sampler_risks
for spec in MODELS:
    cfg = BenchConfig(name="val_srm_sampler_risk", models=(spec,), methods=("adpdm",),
                      presets=("w8a6", "w4a8", "w4a6"), draws=(1, 2), seed=7, num_samples=128, diagnose=True,
                      tuned_on="validation study of the SRM risk (seed 7)")  # fmt: skip
    weights["b2"] = eps_sensitivity(load_model(spec, None).scheduler_config, SamplerConfig(num_steps=cfg.steps)) ** 2
    run_benchmark(cfg, STUDY, resume=True)
