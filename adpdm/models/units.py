"""Reconstruction units of a diffusers UNet or DiT, in execution order.

A unit is a residual block, an attention / transformer block, or a single quantized layer
outside any block (conv_in, the time embedding, down/upsampler convolutions, conv_out; a DiT's
patch embedding and final projections).
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from ..nn.layers import QuantLayer

# outermost first: a UNet's Transformer2DModel holds BasicTransformerBlocks, a DiT's blocks are units
BLOCK_TYPES: tuple[type[nn.Module], ...] = (ResnetBlock2D, Attention, Transformer2DModel, BasicTransformerBlock)


@dataclass
class Unit:
    """One reconstruction unit."""

    name: str
    module: nn.Module
    kind: str  # "resnet" | "attention" | "transformer" | "layer"


def _kind(module: nn.Module) -> str:
    if isinstance(module, ResnetBlock2D):
        return "resnet"
    if isinstance(module, Attention):
        return "attention"
    if isinstance(module, (Transformer2DModel, BasicTransformerBlock)):
        return "transformer"
    return "layer"


def find_units(model: nn.Module) -> list[Unit]:
    """Blocks and lone quantized layers, outermost first, in registration order."""
    units: list[Unit] = []
    for name, module in model.named_modules():
        if any(name.startswith(u.name + ".") for u in units):
            continue  # inside a unit already taken
        if isinstance(module, BLOCK_TYPES) or isinstance(module, QuantLayer):
            units.append(Unit(name, module, _kind(module)))
    return units
