"""Smoothing of the quantized layers' inputs, with a per-layer strength chosen on calibration rows.

For every quantized Conv2d / Linear with a quantized input, one pass over the calibration rows
records the largest |input| of each channel; a second pass scores, on the same rows, the layer's
output error with its input quantized per tensor (the min-max range of the smoothed input) and its
weight quantized by its own quantizer, for no smoothing and for each strength ``alpha``. The best
is kept: a layer never gets smoothing that raises its error on these rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.layers import QuantConv2d, QuantLayer
from ..nn.weight_quant import WeightQuantizer
from ..quantize import quant_layers
from ..tensor.fake_quant import fake_quantize, qparams_from_range, qrange
from ..tensor.smoothing import channel_absmax, smoothing_factors

logger = logging.getLogger(__name__)

ALPHAS = (0.25, 0.5, 0.75, 0.9)


def smoothable(layer: QuantLayer) -> bool:
    """A layer with a quantized input and no grouped convolution."""
    return layer.input_quant is not None and getattr(layer, "groups", 1) == 1


def _input_bits(layer: QuantLayer) -> tuple[int, bool]:
    iq = layer.input_quant
    parts = getattr(iq, "parts", None)
    q = parts[0] if parts is not None else iq
    return q.bits, q.symmetric


def _apply(layer: QuantLayer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, QuantConv2d):
        return layer._conv_forward(x, w, layer.bias)
    return F.linear(x, w, layer.bias)


class _Candidates:
    """One layer's candidate factors (None: no smoothing), their quantized weights, and error sums."""

    def __init__(self, layer: QuantLayer, absmax: torch.Tensor, alphas: Iterable[float]) -> None:
        w = layer.weight.detach()
        w_absmax = channel_absmax(w, 1)
        self.alphas: list[float | None] = [None, *alphas]
        self.factors = [None if a is None else smoothing_factors(absmax, w_absmax, a).to(w.device) for a in self.alphas]
        wq = layer.weight_quant
        self.weights = []
        for s in self.factors:
            ws = w if s is None else w * s.reshape(1, -1, *([1] * (w.dim() - 2)))
            q = WeightQuantizer(wq.bits, wq.symmetric, wq.init, wq.lp_norm, wq.group_size)
            q.init_range(ws)
            self.weights.append(q(ws))
        self.errors = torch.zeros(len(self.alphas), dtype=torch.float64)
        self.bits, self.symmetric = _input_bits(layer)
        self.ranges: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.alphas)

    def score(self, layer: QuantLayer, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Add the output error of every candidate on input ``x``; ``lo`` / ``hi``: per-channel extremes."""
        ref = _apply(layer, x, layer.weight.detach())
        qmin, qmax = qrange(self.bits, self.symmetric)
        view = [1] * x.dim()
        view[layer.INPUT_AXIS] = -1
        for i, (s, w) in enumerate(zip(self.factors, self.weights, strict=True)):
            sv = None if s is None else s.reshape(view)
            xs = x if sv is None else x / sv
            smin, smax = (lo, hi) if sv is None else (lo / sv, hi / sv)
            scale, zero = qparams_from_range(smin.min(), smax.max(), self.bits, self.symmetric)
            out = _apply(layer, fake_quantize(xs, scale, zero, qmin, qmax), w)
            self.errors[i] += float((out - ref).pow(2).sum())


@torch.no_grad()
def smooth_layers(
    model: nn.Module, run: Callable[[], Any], alphas: Iterable[float] = ALPHAS
) -> dict[str, float | None]:
    """Choose and set the smoothing of every smoothable layer of ``model`` (quantized, state FP or
    CALIBRATED, not yet calibrated on smoothed inputs); ``run()`` makes the forward passes over the
    calibration rows and is called twice. Returns each layer's strength (None: not smoothed)."""
    layers = {name: layer for name, layer in quant_layers(model) if smoothable(layer) and not layer.smoothed}
    lo: dict[str, torch.Tensor] = {}
    hi: dict[str, torch.Tensor] = {}

    def extremes(name: str, layer: QuantLayer) -> Callable:
        def hook(_: nn.Module, args: tuple) -> None:
            x = args[0].detach().movedim(layer.INPUT_AXIS, 0).flatten(1)
            a, b = x.amin(dim=1), x.amax(dim=1)
            lo[name] = a if name not in lo else torch.minimum(lo[name], a)
            hi[name] = b if name not in hi else torch.maximum(hi[name], b)

        return hook

    _with_hooks(layers, extremes, run)
    candidates = {name: _Candidates(layer, torch.maximum(-lo[name], hi[name]), alphas) for name, layer in layers.items()
                  if name in lo}  # fmt: skip

    def scorer(name: str, layer: QuantLayer) -> Callable:
        def hook(_: nn.Module, args: tuple) -> None:
            if name in candidates:
                view = [1] * args[0].dim()
                view[layer.INPUT_AXIS] = -1
                candidates[name].score(layer, args[0].detach(), lo[name].reshape(view), hi[name].reshape(view))

        return hook

    _with_hooks(layers, scorer, run)
    chosen: dict[str, float | None] = {}
    for name, cand in candidates.items():
        best = int(torch.argmin(cand.errors))  # ties keep the earliest: no smoothing first
        chosen[name] = cand.alphas[best]
        if cand.factors[best] is not None:
            layers[name].set_smoothing(cand.factors[best])
    smoothed = sum(a is not None for a in chosen.values())
    logger.info("smoothing: %d of %d layers smoothed (strengths %s)", smoothed, len(chosen),
                {a: sum(v == a for v in chosen.values()) for a in (None, *alphas)})  # fmt: skip
    return chosen


def _with_hooks(layers: dict[str, QuantLayer], make: Callable, run: Callable[[], Any]) -> None:
    handles = [layer.register_forward_pre_hook(make(name, layer)) for name, layer in layers.items()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
