"""Quantized Conv2d and Linear: the original modules' subclasses with weight and input quantizers.

They keep ``weight`` and ``bias`` under their usual names (diffusers code that reads
``layer.weight.dtype`` keeps working) and add ``weight_quant`` and ``input_quant``. After
freezing, the integer codes live in the ``weight_codes`` buffer and ``weight`` becomes a
non-persistent buffer of their dequantized values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..state import QuantState
from .act_quant import ActQuantizer, SplitActQuantizer
from .weight_quant import WeightQuantizer

InputQuantizer = ActQuantizer | SplitActQuantizer


class QuantLayer:
    """Mixin holding the quantizers and the lifecycle of one Conv2d / Linear."""

    weight_quant: WeightQuantizer
    input_quant: InputQuantizer | None
    state: QuantState

    def _attach(self, weight_quant: WeightQuantizer, input_quant: InputQuantizer | None) -> None:
        self.weight_quant = weight_quant
        self.input_quant = input_quant
        self.state = QuantState.FP

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_quant is None else self.input_quant(x)

    def quant_weight(self) -> torch.Tensor:
        if self.state in (QuantState.FP, QuantState.CALIBRATING, QuantState.FROZEN):
            return self.weight
        return self.weight_quant(self.weight)

    @torch.no_grad()
    def freeze_weight(self) -> None:
        """Replace the float weight by integer codes (and their dequantized cache)."""
        codes = self.weight_quant.codes(self.weight)
        dtype = torch.int8 if self.weight_quant.symmetric else torch.uint8
        self._set_frozen(codes.to(dtype))

    def _set_frozen(self, codes: torch.Tensor) -> None:
        if isinstance(self.weight, nn.Parameter):
            del self.weight  # drops the Parameter; re-registered below as a derived buffer
        self.register_buffer("weight_codes", codes)
        self.register_buffer("weight", torch.empty(0), persistent=False)
        self.weight_quant.rounding = None
        self.refresh_weight()

    @torch.no_grad()
    def refresh_weight(self) -> None:
        """Recompute the dequantized weight from the codes (after freezing or loading)."""
        self.weight = self.weight_quant.dequantize(self.weight_codes)

    def prepare_frozen(self, weight_shape: torch.Size) -> None:
        """Allocate the frozen buffers with the right shapes, ready for ``load_state_dict``."""
        wq = self.weight_quant
        shape = wq.qparam_shape(weight_shape)
        wq.scale, wq.zero_point = torch.ones(shape), torch.zeros(shape)
        dtype = torch.int8 if wq.symmetric else torch.uint8
        self._set_frozen(torch.zeros(weight_shape, dtype=dtype))


class QuantConv2d(QuantLayer, nn.Conv2d):
    """A Conv2d whose input and weight are quantized."""

    @classmethod
    def from_float(
        cls, conv: nn.Conv2d, weight_quant: WeightQuantizer, input_quant: InputQuantizer | None
    ) -> QuantConv2d:
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, device="meta",
        )  # fmt: skip
        new.weight, new.bias = conv.weight, conv.bias
        new.train(conv.training)
        new._attach(weight_quant, input_quant)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.quant_input(x), self.quant_weight(), self.bias)


class QuantLinear(QuantLayer, nn.Linear):
    """A Linear whose input and weight are quantized."""

    @classmethod
    def from_float(
        cls, linear: nn.Linear, weight_quant: WeightQuantizer, input_quant: InputQuantizer | None
    ) -> QuantLinear:
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        new.train(linear.training)
        new._attach(weight_quant, input_quant)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quant_input(x), self.quant_weight(), self.bias)
