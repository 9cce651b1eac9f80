"""Tiny frozen quantized UNets for the deploy tests."""

from __future__ import annotations

import torch
from conftest import make_unet
from diffusers import DDPMScheduler

import adpdm
from adpdm.sampling import SamplerConfig, sample

STEPS = 6
SCHEDULER = dict(DDPMScheduler().config)


def frozen_unet(preset: str = "w8a8", groups: int = 2, num_class_embeds: int | None = None) -> torch.nn.Module:
    """A tiny UNet quantized with ``preset``, calibrated on its own DDIM trajectories, frozen."""
    torch.manual_seed(0)
    unet = make_unet(num_class_embeds=num_class_embeds)
    recorded = []
    labels = dict(num_classes=num_class_embeds) if num_class_embeds else {}
    sample(unet, SCHEDULER, 4, SamplerConfig(num_steps=STEPS, batch_size=4), progress=False,
           callback=lambda k, t, inp: recorded.append((k, inp)), **labels)  # fmt: skip
    adpdm.quantize_model(unet, adpdm.QuantConfig.preset(preset, groups=groups, num_steps=STEPS))
    with adpdm.calibrate(unet), torch.no_grad():
        for k, inp in recorded:
            with adpdm.step_context(k):
                unet(inp.sample, inp.timestep, class_labels=inp.class_labels)
    return adpdm.freeze(unet)


def frozen_embedded(
    preset: str = "w8a8", groups: int = 2, steps: int = 10, smoothing: bool = False
) -> tuple[torch.nn.Module, dict]:
    """The embedded MNIST UNet quantized round-to-nearest on 4 of its own trajectories (smoothed first
    with ``smoothing``), frozen."""
    from adpdm.calib.smooth import smooth_layers
    from adpdm.embedded import load_embedded

    model = load_embedded("mnist")
    unet, recorded = model.unet, []
    sample(unet, model.scheduler_config, 4, SamplerConfig(num_steps=steps, batch_size=4), progress=False,
           callback=lambda k, t, inp: recorded.append((k, inp)))  # fmt: skip
    adpdm.quantize_model(unet, adpdm.QuantConfig.preset(preset, groups=groups, num_steps=steps, smoothing=smoothing))

    @torch.no_grad()
    def run() -> None:
        for k, inp in recorded:
            with adpdm.step_context(k):
                unet(inp.sample, inp.timestep)

    if smoothing:
        smooth_layers(unet, run)
    with adpdm.calibrate(unet):
        run()
    return adpdm.freeze(unet), model.scheduler_config
