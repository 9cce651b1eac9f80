"""Weight quantizer (per output channel, or per group of input channels) with nearest or learned
(AdaRound / SignRound) rounding."""

from __future__ import annotations

import torch
from torch import nn

from ..state import QuantState
from ..tensor import adaround, signround
from ..tensor.fake_quant import (
    dequantize,
    fake_quantize,
    lp_search_qparams,
    minmax_range,
    qparams_from_range,
    qrange,
    quantize,
)
from ..tensor.grouping import block_rows, expand_blocks

ROUNDINGS = ("adaround", "sign")
HARD_LOGIT = 10.0  # |V| with h(V) exactly 0 or 1: a decided AdaRound variable (h(10) = clamp(1.0999) = 1)


class WeightQuantizer(nn.Module):
    """Asymmetric (or symmetric) quantizer of a weight tensor, per output channel or per group.

    With ``group_size`` B, each scale and zero point covers B consecutive input channels (axis 1)
    of one output channel at one kernel position: a Conv2d weight (O, I, kh, kw) has qparams of
    shape (O, ceil(I / B), kh, kw), a Linear (O, I) of shape (O, ceil(I / B)); one pair per B
    weights, the layout of ONNX's blocked ``DequantizeLinear`` (``axis=1, block_size=B``).
    :meth:`qparams` expands them to the weight's shape.

    ``rounding`` holds the learned rounding variables, read by ``rounding_mode``: AdaRound logits V
    (soft codes while reconstructing, ``V >= 0`` otherwise) or SignRound offsets v (always hard:
    ``round(w / s + v)``). A decided rounding is stored as AdaRound logits ``+-HARD_LOGIT``, the
    form every later step (other units' reconstruction, resume, :func:`adpdm.freeze`) reads.

    Args:
        bits: bit width.
        symmetric: signed codes with zero point 0.
        init: range initialisation, "lp" (Lp search over shrink factors) or "minmax".
        lp_norm: p of the Lp search (default 2.4).
        group_size: input channels per scale (None: one scale per output channel).
    """

    def __init__(
        self, bits: int, symmetric: bool = False, init: str = "lp", lp_norm: float = 2.4, group_size: int | None = None
    ) -> None:
        super().__init__()
        bad = isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1
        if group_size is not None and bad:
            raise ValueError(f"group_size must be a positive int or None, got {group_size!r}")
        self.bits, self.symmetric, self.init, self.lp_norm = bits, symmetric, init, lp_norm
        self.group_size = group_size
        self.qmin, self.qmax = qrange(bits, symmetric)
        self.register_buffer("scale", torch.empty(0))
        self.register_buffer("zero_point", torch.empty(0))
        self.rounding: nn.Parameter | None = None  # learned rounding variables, same shape as the weight
        self.rounding_mode = "adaround"
        self.state = QuantState.FP

    @property
    def initialized(self) -> bool:
        return self.scale.numel() > 0

    def qparam_shape(self, weight_shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the stored scale and zero point for a weight of ``weight_shape``."""
        if self.group_size is None:
            return (weight_shape[0],) + (1,) * (len(weight_shape) - 1)
        blocks = -(-weight_shape[1] // self.group_size)
        return (weight_shape[0], blocks, *weight_shape[2:])

    def qparams(self, in_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero point broadcastable against a weight of ``in_channels`` input channels
        (groups expanded along axis 1)."""
        if self.group_size is None:
            return self.scale, self.zero_point
        b = self.group_size
        return expand_blocks(self.scale, b, in_channels), expand_blocks(self.zero_point, b, in_channels)

    @torch.no_grad()
    def init_range(self, w: torch.Tensor) -> None:
        """Scale and zero point for weight ``w``: per output channel (axis 0) or per group."""
        rows = w if self.group_size is None else block_rows(w, self.group_size)
        if self.init == "minmax":
            xmin, xmax = minmax_range(rows, channel_axis=0)
            scale, zero = qparams_from_range(xmin, xmax, self.bits, self.symmetric)
        else:
            scale, zero = lp_search_qparams(rows, self.bits, self.symmetric, channel_axis=0, p=self.lp_norm)
        shape = self.qparam_shape(w.shape)
        self.scale, self.zero_point = scale.reshape(shape), zero.reshape(shape)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Real values of integer weight ``codes``."""
        scale, zero = self.qparams(codes.shape[1])
        return dequantize(codes, scale, zero)

    def enable_adaround(self, w: torch.Tensor) -> nn.Parameter:
        """Start learned rounding from the fractional part of ``w / scale``; returns V."""
        return self.enable_rounding(w, "adaround")

    def enable_rounding(self, w: torch.Tensor, mode: str) -> nn.Parameter:
        """Start learned rounding of ``mode``: AdaRound from the FP weights (soft weights equal ``w``),
        SignRound from ``v = 0`` (round to nearest). Returns the rounding parameter."""
        if mode not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {mode!r}")
        w = w.detach()
        init = adaround.init_logits(w, self.qparams(w.shape[1])[0]) if mode == "adaround" else torch.zeros_like(w)
        self.rounding = nn.Parameter(init)
        self.rounding_mode = mode
        return self.rounding

    @torch.no_grad()
    def set_rounding_up(self, w: torch.Tensor, up: torch.Tensor) -> None:
        """Decided rounding: ``floor(w / s) + 1`` where ``up``, ``floor(w / s)`` elsewhere."""
        logits = torch.where(up, HARD_LOGIT, -HARD_LOGIT).to(w.dtype)
        if self.rounding is None or self.rounding.shape != w.shape:
            self.rounding = nn.Parameter(logits)
        else:
            self.rounding.data.copy_(logits)
        self.rounding.requires_grad_(False)
        self.rounding_mode = "adaround"

    @torch.no_grad()
    def set_nearest(self, w: torch.Tensor) -> None:
        """Decided rounding equal to round-to-nearest (the codes of ``quantize``, ties to even)."""
        x = w / self.qparams(w.shape[1])[0]
        self.set_rounding_up(w, torch.round(x) > torch.floor(x))

    @torch.no_grad()
    def harden(self, w: torch.Tensor) -> None:
        """Decide every rounding variable as :meth:`codes` does now (no change to the codes)."""
        if self.rounding is not None:
            self.set_rounding_up(w, self._round_up(w))

    def _round_up(self, w: torch.Tensor) -> torch.Tensor:
        if self.rounding_mode == "sign":
            x = w / self.qparams(w.shape[1])[0]
            return torch.round(x + self.rounding) > torch.floor(x)
        return self.rounding >= 0

    @torch.no_grad()
    def undecided(self) -> torch.Tensor | None:
        """Boolean mask of the AdaRound variables with h(V) in (0.01, 0.99); None without AdaRound.
        SignRound variables are always decided (its forward pass is hard)."""
        if self.rounding is None:
            return None
        if self.rounding_mode == "sign":
            return torch.zeros_like(self.rounding, dtype=torch.bool)
        h = adaround.rectified_sigmoid(self.rounding)
        return (h > 0.01) & (h < 0.99)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Fake-quantized weight: soft AdaRound while reconstructing, hard rounding otherwise."""
        scale, zero = self.qparams(w.shape[1])
        if self.rounding is None:
            return fake_quantize(w, scale, zero, self.qmin, self.qmax)
        if self.rounding_mode == "sign":
            return signround.fake_quantize(w.detach(), scale, zero, self.rounding, self.qmin, self.qmax)
        if self.state == QuantState.RECONSTRUCTING:
            w_floor = torch.floor(w.detach() / scale)
            codes = adaround.soft_codes(w_floor, self.rounding, zero, self.qmin, self.qmax)
            return (codes - zero) * scale
        return dequantize(self.codes(w), scale, zero)

    @torch.no_grad()
    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Integer codes of ``w`` (a float tensor of integers in [qmin, qmax])."""
        scale, zero = self.qparams(w.shape[1])
        if self.rounding is None:
            return quantize(w, scale, zero, self.qmin, self.qmax)
        if self.rounding_mode == "sign":
            return signround.codes(w, scale, zero, self.rounding, self.qmin, self.qmax)
        w_floor = torch.floor(w / scale)
        return adaround.hard_codes(w_floor, self.rounding, zero, self.qmin, self.qmax)

    def regularizer(self, beta: float) -> torch.Tensor:
        """AdaRound rounding regulariser (0 when no learned AdaRound rounding is active)."""
        if self.rounding is None or self.rounding_mode != "adaround":
            return self.scale.new_zeros(())
        return adaround.rounding_regularizer(self.rounding, beta)

    def extra_repr(self) -> str:
        granularity = "per_channel=True" if self.group_size is None else f"group_size={self.group_size}"
        return f"bits={self.bits}, symmetric={self.symmetric}, {granularity}"
