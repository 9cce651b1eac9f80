"""Helpers of the range-start study: every weight and activation range of a model, the min-max ones, setting them.

The scripts of this folder import it by name (``from common import ...``): Python puts a script's own folder first
on ``sys.path``."""

from __future__ import annotations

import torch

from adpdm.quantize import act_quantizers, init_ranges, quant_layers


def _ranges(model):
    weights = [(lay.weight_quant.scale.clone(), lay.weight_quant.zero_point.clone()) for _, lay in quant_layers(model)]
    acts = [(q.scale.detach().clone(), q.zero_point.clone()) for _, q in act_quantizers(model)]
    return {"weights": weights, "activations": acts}


@torch.no_grad()
def _set(model, weights=None, acts=None):
    if weights is not None:
        for (_, lay), (scale, zero) in zip(quant_layers(model), weights, strict=True):
            lay.weight_quant.scale, lay.weight_quant.zero_point = scale.clone(), zero.clone()
    if acts is not None:
        for (_, q), (scale, zero) in zip(act_quantizers(model), acts, strict=True):
            q.scale.copy_(scale)
            q.zero_point.copy_(zero)


@torch.no_grad()
def _minmax_ranges(model):
    saved = _ranges(model)
    members = [lay.weight_quant for _, lay in quant_layers(model)] + [q for _, q in act_quantizers(model)]
    inits = [m.init for m in members]
    try:
        for m in members:
            m.init = "minmax"
        init_ranges(model)
        return _ranges(model)
    finally:
        for m, init in zip(members, inits, strict=True):
            m.init = init
        _set(model, saved["weights"], saved["activations"])
