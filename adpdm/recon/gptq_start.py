"""Start a unit's learned rounding from GPTQ's (:mod:`adpdm.tensor.gptq`) instead of round to nearest.

Each layer's Hessian comes from the inputs it sees in the quantized model on the unit's fit rows
(activations quantized as deployed), every row counted by the reconstruction's own row weight, so
GPTQ and the reconstruction minimise the same weighted error. GPTQ's codes that differ from the
floor or ceiling of ``w / s`` by more than one step are clipped to them: the learned rounding, which
chooses between the two, starts from GPTQ's choice and may still move it.
"""

from __future__ import annotations

import torch

from ..context import step_context
from ..nn.layers import QuantLayer
from ..tensor.gptq import add_to_hessian, gptq_codes, layer_inputs
from .capture import UnitInputs, unit_forward


@torch.no_grad()
def layer_hessians(
    unit: torch.nn.Module, layers: list[QuantLayer], inputs: UnitInputs, rows: torch.Tensor, steps: torch.Tensor,
    weights: torch.Tensor, batch: int,
) -> list[torch.Tensor]:  # fmt: skip
    """``2 X X^T / rows`` of every layer's (quantized) inputs on ``rows``, row r scaled by ``sqrt(weights[r])``
    (None for a grouped convolution)."""
    sums: list[tuple[torch.Tensor | None, int]] = [(None, 0)] * len(layers)
    current: dict[str, torch.Tensor] = {}

    def hook(i: int):  # noqa: ANN202
        def pre(module: torch.nn.Module, args: tuple) -> None:
            x = module.quant_input(args[0])
            scale = current["scale"].to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1))
            h, n = sums[i]
            sums[i] = add_to_hessian(h, layer_inputs(module, x * scale), n)

        return pre

    covered = [i for i, lay in enumerate(layers) if getattr(lay, "groups", 1) == 1]  # grouped convs: nearest
    handles = [layers[i].register_forward_pre_hook(hook(i)) for i in covered]
    try:
        for r in rows.split(batch):
            current["scale"] = weights[r].sqrt()
            with step_context(steps[r]):
                unit_forward(unit, inputs, r)
    finally:
        for h in handles:
            h.remove()
    return [h for h, _ in sums]


@torch.no_grad()
def set_gptq_rounding(layer: QuantLayer, hessian: torch.Tensor) -> None:
    """Decide ``layer``'s rounding (floor or ceiling of ``w / s``) as GPTQ's codes under ``hessian`` do."""
    wq = layer.weight_quant
    w = layer.weight
    codes = gptq_codes(w, hessian.to(w.device), wq.scale, wq.zero_point, wq.qmin, wq.qmax)
    steps = codes - torch.round(wq.zero_point)  # the grid index GPTQ chose
    wq.set_rounding_up(w, steps > torch.floor(w / wq.scale))
