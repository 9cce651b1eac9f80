"""Quantized modules: quantizers and the layers that carry them."""

from .act_quant import ActQuantizer, SplitActQuantizer, StepPartition
from .attention import QuantAttnProcessor
from .layers import QuantConv2d, QuantLayer, QuantLinear
from .weight_quant import WeightQuantizer

__all__ = [
    "ActQuantizer",
    "QuantAttnProcessor",
    "QuantConv2d",
    "QuantLayer",
    "QuantLinear",
    "SplitActQuantizer",
    "StepPartition",
    "WeightQuantizer",
]
