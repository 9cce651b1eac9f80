"""The units of a sensitivity analysis: what one row switches on, found in a quantized model."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..calib.data import CalibrationSet
from ..context import step_context
from ..nn.act_quant import ActQuantizer
from ..nn.attention import QuantAttnProcessor
from ..quantize import act_quantizers, quant_layers


@dataclass
class Unit:
    """What one row of the analysis switches on: a layer's weight and input quantizers, or an attention block's."""

    name: str
    kind: str  # "conv", "linear" or "attention"
    params: int
    wbits: int | None
    abits: int | None
    module: nn.Module  # the layer or the Attention module
    quantizers: list[str] = field(default_factory=list)
    weight: tuple[nn.Module, ...] = ()
    act: tuple[nn.Module, ...] = ()


def find_units(model: nn.Module) -> list[Unit]:
    """Every quantized layer, then every attention block with matmul quantizers, in module order
    (:func:`execution_order` sorts them as a forward pass runs them)."""
    qnames = {id(q): n for n, q in act_quantizers(model)}
    units = []
    for name, layer in quant_layers(model):
        acts = [] if layer.input_quant is None else [m for m in layer.input_quant.modules() if id(m) in qnames]
        kind = "conv" if isinstance(layer, nn.Conv2d) else "linear"
        units.append(Unit(name, kind, layer.weight.numel(), layer.weight_quant.bits, acts[0].bits if acts else None,
                          layer, [qnames[id(q)] for q in acts], (layer, layer.weight_quant), tuple(acts)))  # fmt: skip
    for name, proc in model.named_modules():
        if isinstance(proc, QuantAttnProcessor):
            acts = [m for m in proc.modules() if isinstance(m, ActQuantizer)]
            block = name.removesuffix(".processor")
            units.append(Unit(block, "attention", 0, None, proc.q_quant.bits, model.get_submodule(block),
                              [qnames[id(q)] for q in acts], (), tuple(acts)))  # fmt: skip
    return units


@torch.no_grad()
def execution_order(model: nn.Module, units: list[Unit], calib: CalibrationSet, device: torch.device) -> list[Unit]:
    """``units`` in the order a forward pass on one recorded row first calls them (never called: last)."""
    first: dict[int, int] = {}

    def seen(i: int):  # noqa: ANN202
        def hook(*_: object) -> None:
            first.setdefault(i, len(first))

        return hook

    handles = [u.module.register_forward_pre_hook(seen(i)) for i, u in enumerate(units)]
    try:
        x, t, step, cond = calib.model_inputs(torch.arange(1), device)
        with step_context(step.to(device)):
            model(x, t, **cond)
    finally:
        for h in handles:
            h.remove()
    return [units[i] for i in sorted(range(len(units)), key=lambda i: first.get(i, len(units) + i))]
