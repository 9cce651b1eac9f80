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


def make_pixart(**kwargs) -> torch.nn.Module:
    """A tiny PixArt transformer (8x8 latents of 4 channels, learned variance, 16-dim captions), called as a
    UNet is (:func:`adpdm.models.unet.prepare_denoiser`)."""
    from diffusers import PixArtTransformer2DModel

    from adpdm.models.unet import prepare_denoiser

    torch.manual_seed(0)
    return prepare_denoiser(PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, cross_attention_dim=16, caption_channels=16, norm_num_groups=1, **kwargs,
    ).eval())  # fmt: skip


def frozen_pixart(groups: int = 2) -> torch.nn.Module:
    """A tiny PixArt transformer at W8A8, calibrated on random latents and padded random captions, frozen."""
    model = make_pixart()
    adpdm.quantize_model(model, adpdm.QuantConfig.preset("w8a8", groups=groups, num_steps=STEPS))
    x, emb, mask = torch.randn(4, 4, 8, 8), torch.randn(4, 12, 16), torch.ones(4, 12)
    mask[:, 7:] = 0  # padding after 7 tokens
    with adpdm.calibrate(model), torch.no_grad():
        for k in range(STEPS):
            with adpdm.step_context(k):
                model(x, torch.full((4,), 999 - 160 * k), encoder_hidden_states=emb, encoder_attention_mask=mask)
    return adpdm.freeze(model)
