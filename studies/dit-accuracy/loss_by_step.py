"""Held-out denoising error of class-conditional models by timestep, with the true label and with the null label.

Noises the first 512 MNIST test images at a few training timesteps (noise seed 0) and prints each model's
mean squared eps-prediction error there, once with the images' labels and once with the null label of
classifier-free guidance. A model that uses its label well has a clear gap between the two; a model whose
error is high with the true label lacks denoising skill at that noise level whatever the label.

    PYTHONPATH=. .venv/bin/python studies/dit-accuracy/loss_by_step.py embedded:mnist-dit embedded:mnist-cond
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from adpdm.data.mnist import load_mnist
from adpdm.models.loading import load_model
from adpdm.utils.resources import machine_description, provenance

TIMESTEPS = (50, 150, 300, 500, 700, 900)


@torch.no_grad()
def loss_by_step(spec: str, num: int = 512) -> dict[str, dict[int, float]]:
    model = load_model(spec)
    if model.null_class is None:
        raise SystemExit(f"{spec} is not class-conditional with a null label")
    images, labels = load_mnist("test")
    x0, y = images[:num], labels[:num]
    scheduler = DDPMScheduler.from_config(model.scheduler_config)
    gen = torch.Generator().manual_seed(0)
    out: dict[str, dict[int, float]] = {"label": {}, "null": {}}
    for t in TIMESTEPS:
        noise = torch.randn(x0.shape, generator=gen)
        tt = torch.full((num,), t)
        xt = scheduler.add_noise(x0, noise, tt)
        for name, lab in (("label", y), ("null", torch.full_like(y, model.null_class))):
            out[name][t] = F.mse_loss(model.unet(xt, tt, class_labels=lab).sample, noise).item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    results = {spec: loss_by_step(spec) for spec in args.models}
    sys.stdout.write("| model | label | " + " | ".join(f"t={t}" for t in TIMESTEPS) + " |\n")
    sys.stdout.write("|---|---|" + "---|" * len(TIMESTEPS) + "\n")
    for spec, res in results.items():
        for name, row in res.items():
            sys.stdout.write(f"| {spec} | {name} | " + " | ".join(f"{row[t]:.4f}" for t in TIMESTEPS) + " |\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"timesteps": TIMESTEPS, "results": results, **provenance(), "machine": machine_description()},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
