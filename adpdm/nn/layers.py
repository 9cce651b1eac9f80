"""Quantized Conv2d and Linear: the original modules' subclasses with weight and input quantizers.

They keep ``weight`` and ``bias`` under their usual names (diffusers code that reads
``layer.weight.dtype`` keeps working) and add ``weight_quant`` and ``input_quant``. After
freezing, the integer codes live in the ``weight_codes`` buffer and ``weight`` becomes a
non-persistent buffer of their dequantized values.

A smoothed layer (:meth:`QuantLayer.set_smoothing`) holds per-input-channel factors ``s`` in the
``smooth`` buffer: its input is divided by ``s`` before the input quantizer and its weight is
multiplied by ``s`` along the input axis before the weight quantizer, which leaves the float
function unchanged and moves activation range from wide channels into the weights. After
freezing, the codes are those of the scaled weight.
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

    INPUT_AXIS: int = 1  # the input-channel axis of the layer's input (Linear: -1)

    def _attach(self, weight_quant: WeightQuantizer, input_quant: InputQuantizer | None) -> None:
        self.weight_quant = weight_quant
        self.input_quant = input_quant
        self.state = QuantState.FP

    @property
    def smoothed(self) -> bool:
        return getattr(self, "smooth", None) is not None

    def set_smoothing(self, factors: torch.Tensor) -> None:
        """Per-input-channel smoothing factors ``s`` (> 0, one per input channel); before freezing."""
        n = self.weight_codes.shape[1] if self.state == QuantState.FROZEN else self.weight.shape[1]
        if factors.shape != (n,) or not bool((factors > 0).all()):
            raise ValueError(f"smoothing factors must be {n} positive values, got shape {tuple(factors.shape)}")
        self.register_buffer("smooth", factors.detach().to(torch.float32).clone())

    def _channel_view(self, t: torch.Tensor, dims: int, axis: int) -> torch.Tensor:
        shape = [1] * dims
        shape[axis] = -1
        return t.reshape(shape)

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.smoothed:
            x = x / self._channel_view(self.smooth, x.dim(), self.INPUT_AXIS).to(x.dtype)
        return x if self.input_quant is None else self.input_quant(x)

    def weight_to_quantize(self) -> torch.Tensor:
        """The float weight the weight quantizer sees: ``weight``, times ``s`` along the input axis if smoothed."""
        if not self.smoothed:
            return self.weight
        return self.weight * self._channel_view(self.smooth, self.weight.dim(), 1).to(self.weight.dtype)

    def quant_weight(self) -> torch.Tensor:
        if self.state == QuantState.FROZEN:
            return self.weight
        if self.state in (QuantState.FP, QuantState.CALIBRATING):
            return self.weight_to_quantize()
        return self.weight_quant(self.weight_to_quantize())

    @torch.no_grad()
    def freeze_weight(self) -> None:
        """Replace the float weight by integer codes (and their dequantized cache)."""
        codes = self.weight_quant.codes(self.weight_to_quantize())
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

    INPUT_AXIS = -1

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
