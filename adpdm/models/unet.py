"""diffusers UNet specifics: supported classes, first/last layers, skip-connection splits."""

from __future__ import annotations

from diffusers import UNet2DConditionModel, UNet2DModel
from torch import nn

SUPPORTED_UNETS: dict[str, type[nn.Module]] = {
    "UNet2DModel": UNet2DModel,
    "UNet2DConditionModel": UNet2DConditionModel,
}

FIRST_LAST_LAYERS = ("conv_in", "conv_out")


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
