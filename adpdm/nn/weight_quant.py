"""Per-output-channel weight quantizer with nearest or learned (AdaRound) rounding."""

from __future__ import annotations

import torch
from torch import nn

from ..state import QuantState
from ..tensor import adaround
from ..tensor.fake_quant import (
    dequantize,
    fake_quantize,
    lp_search_qparams,
    minmax_range,
    qparams_from_range,
    qrange,
    quantize,
)


class WeightQuantizer(nn.Module):
    """Asymmetric (or symmetric) per-output-channel quantizer of a weight tensor.

    Args:
        bits: bit width.
        symmetric: signed codes with zero point 0.
        init: range initialisation, "lp" (Lp search over shrink factors) or "minmax".
        lp_norm: p of the Lp search (default 2.4).
    """

    def __init__(self, bits: int, symmetric: bool = False, init: str = "lp", lp_norm: float = 2.4) -> None:
        super().__init__()
        self.bits, self.symmetric, self.init, self.lp_norm = bits, symmetric, init, lp_norm
        self.qmin, self.qmax = qrange(bits, symmetric)
        self.register_buffer("scale", torch.empty(0))
        self.register_buffer("zero_point", torch.empty(0))
        self.rounding: nn.Parameter | None = None  # AdaRound logits V, same shape as the weight
        self.state = QuantState.FP

    @property
    def initialized(self) -> bool:
        return self.scale.numel() > 0

    @torch.no_grad()
    def init_range(self, w: torch.Tensor) -> None:
        """Per-channel scale and zero point for weight ``w`` (channel axis 0)."""
        if self.init == "minmax":
            xmin, xmax = minmax_range(w, channel_axis=0)
            scale, zero = qparams_from_range(xmin, xmax, self.bits, self.symmetric)
        else:
            scale, zero = lp_search_qparams(w, self.bits, self.symmetric, channel_axis=0, p=self.lp_norm)
        self.scale, self.zero_point = scale, zero

    def enable_adaround(self, w: torch.Tensor) -> nn.Parameter:
        """Start learned rounding from the fractional part of ``w / scale``; returns V."""
        self.rounding = nn.Parameter(adaround.init_logits(w.detach(), self.scale))
        return self.rounding

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Fake-quantized weight: soft AdaRound while reconstructing, hard rounding otherwise."""
        if self.rounding is None:
            return fake_quantize(w, self.scale, self.zero_point, self.qmin, self.qmax)
        w_floor = torch.floor(w.detach() / self.scale)
        if self.state == QuantState.RECONSTRUCTING:
            codes = adaround.soft_codes(w_floor, self.rounding, self.zero_point, self.qmin, self.qmax)
            return (codes - self.zero_point) * self.scale
        return dequantize(self.codes(w), self.scale, self.zero_point)

    @torch.no_grad()
    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Integer codes of ``w`` (a float tensor of integers in [qmin, qmax])."""
        if self.rounding is None:
            return quantize(w, self.scale, self.zero_point, self.qmin, self.qmax)
        w_floor = torch.floor(w / self.scale)
        return adaround.hard_codes(w_floor, self.rounding, self.zero_point, self.qmin, self.qmax)

    def regularizer(self, beta: float) -> torch.Tensor:
        """AdaRound rounding regulariser (0 when no learned rounding is active)."""
        if self.rounding is None:
            return self.scale.new_zeros(())
        return adaround.rounding_regularizer(self.rounding, beta)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}, per_channel=True"
