"""diffusers denoiser specifics: supported classes, first/last layers, skip-connection splits.

The denoisers are UNets (``UNet2DModel``, text-conditioned ``UNet2DConditionModel``) and the
diffusion transformers ``DiTTransformer2DModel`` (class-conditional) and ``PixArtTransformer2DModel``
(text-conditioned), a pipeline's ``unet`` or ``transformer``. The rest of adpdm calls any of them
"the unet" of a model.
"""

from __future__ import annotations

from typing import Any

from diffusers import DiTTransformer2DModel, PixArtTransformer2DModel, UNet2DConditionModel, UNet2DModel
from torch import nn

SUPPORTED_UNETS: dict[str, type[nn.Module]] = {
    "UNet2DModel": UNet2DModel,
    "UNet2DConditionModel": UNet2DConditionModel,
    "DiTTransformer2DModel": DiTTransformer2DModel,
    "PixArtTransformer2DModel": PixArtTransformer2DModel,
}
TRANSFORMERS = ("DiTTransformer2DModel", "PixArtTransformer2DModel")
TEXT_DENOISERS = ("UNet2DConditionModel", "PixArtTransformer2DModel")  # conditioned on text embeddings

# the field's protocol keeps these at 8 bits: a UNet's first and last convolutions, a transformer's patch
# embedding and final projection (DiT: proj_out_2, PixArt: proj_out; top-level names, unique to each family)
FIRST_LAST_LAYERS = ("conv_in", "conv_out", "pos_embed.proj", "proj_out_2", "proj_out")


def is_transformer(model: nn.Module) -> bool:
    """Whether ``model`` is a diffusion transformer (patches and transformer blocks, no convolutions
    after the patch embedding)."""
    return type(model).__name__ in TRANSFORMERS


def unet_of(pipe: Any) -> nn.Module:
    """The supported denoiser of a diffusers pipeline (its ``unet`` or ``transformer``); a ``ValueError``
    naming the pipeline's denoiser class and the supported ones for any other (PixArt, SD3, a 3-D UNet)."""
    denoiser = getattr(pipe, "unet", None)
    if not isinstance(denoiser, nn.Module):
        denoiser = getattr(pipe, "transformer", None)
    if isinstance(denoiser, nn.Module) and type(denoiser).__name__ in SUPPORTED_UNETS:
        return denoiser
    found = f"its denoiser is {type(denoiser).__name__}" if isinstance(denoiser, nn.Module) else "it has no denoiser"
    raise ValueError(f"{type(pipe).__name__}: {found}; adpdm quantizes pipelines whose denoiser is one of "
                     f"{sorted(SUPPORTED_UNETS)}")  # fmt: skip


def check_supported(model: nn.Module) -> None:
    """Raise a ``TypeError`` naming the supported classes for any other model."""
    if type(model).__name__ not in SUPPORTED_UNETS:
        raise TypeError(f"unsupported model class {type(model).__name__}; adpdm quantizes {sorted(SUPPORTED_UNETS)}")


def skip_concat_splits(unet: nn.Module) -> dict[str, int]:
    """Layers whose input is ``cat([hidden, skip], dim=1)``, with the channel count of ``hidden``.

    In the upsampling path every resnet receives the previous hidden state concatenated with a
    skip connection from the downsampling path. Its ``conv_shortcut`` consumes that concatenation
    directly. ``hidden`` has the output channels of the module that ran just before.
    """
    splits: dict[str, int] = {}
    if not hasattr(unet, "up_blocks"):  # a transformer has no skip concatenations
        return splits
    mid = getattr(unet, "mid_block", None)
    if mid is not None and getattr(mid, "resnets", None):
        prev = mid.resnets[-1].out_channels
    else:
        prev = unet.config.block_out_channels[-1]
    for b, block in enumerate(unet.up_blocks):
        for r, resnet in enumerate(block.resnets):
            shortcut = getattr(resnet, "conv_shortcut", None)
            if shortcut is not None and 0 < prev < resnet.in_channels:
                splits[f"up_blocks.{b}.resnets.{r}.conv_shortcut"] = prev
            prev = resnet.out_channels
    return splits


def _unet_call(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if len(args) > 1 and "timestep" not in kwargs:  # PixArt's second parameter is encoder_hidden_states
        args, kwargs = args[:1], {**kwargs, "timestep": args[1]}
    if kwargs.get("added_cond_kwargs") is None:
        kwargs = {**kwargs, "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
    return args, kwargs


def prepare_denoiser(model: nn.Module) -> nn.Module:
    """Let ``model`` be called as a UNet is, ``model(x, t, **cond)`` with the recorded conditioning only: a
    PixArt transformer takes the timestep as its second argument and gets its (empty) ``added_cond_kwargs``
    when a call leaves them out. Returns ``model``."""
    if type(model).__name__ == "PixArtTransformer2DModel" and not getattr(model, "_adpdm_prepared", False):
        model.register_forward_pre_hook(_unet_call, with_kwargs=True)
        model._adpdm_prepared = True
    return model
