"""What a quantized model costs: multiply-accumulates, bit-operations, effective bits, weight bytes.

A Conv2d / Linear that runs ``M`` multiply-accumulates per sample with ``w``-bit weights on ``a``-bit
inputs costs ``M * w * a`` bit-operations (BOPs, the count of the mixed-precision literature). Over a
model, the effective bits are the bit widths averaged over the multiply-accumulates:

    w_eff = sum_l M_l w_l / sum_l M_l        a_eff = sum_l M_l a_l / sum_l M_l

so a model with its full-resolution layers' inputs at 8 bits and the rest at 6 reads, e.g., W6A6.9,
never W6A6. An unquantized input counts as 16 bits (``abits`` 16 of a layer pattern) and an FP layer
as 32. The attention matmuls (activation times activation) are not counted: the layers are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

FP_BITS = 32
UNQUANTIZED_INPUT_BITS = 16


@dataclass
class LayerCost:
    """One Conv2d / Linear: its multiply-accumulates per sample and bit widths.

    ``qparams``: its weight's scale and zero-point pairs (one per output channel, or one per group
    of input channels with grouped weight scales; 0 for an FP layer).
    """

    name: str
    macs: int
    params: int
    wbits: int
    abits: int
    qparams: int = 0

    @property
    def weight_bytes(self) -> float:
        """Codes at ``wbits`` plus an fp32 scale and a ``wbits`` zero point per pair, as deployed."""
        return (self.params * self.wbits + self.qparams * (FP_BITS + self.wbits)) / 8

    @property
    def bops(self) -> int:
        return self.macs * self.wbits * self.abits


@dataclass
class ModelCost:
    """Costs summed over the layers (per sample, one denoiser call).

    Args:
        macs: multiply-accumulates.
        bops: bit-operations, ``sum M w a``.
        wbits: effective weight bits (MAC-weighted mean).
        abits: effective activation bits (MAC-weighted mean).
        weight_bytes: bytes of the layers' weights at their bit widths, with their scales and zero
            points (what grouped weight scales cost).
    """

    macs: int
    bops: int
    wbits: float
    abits: float
    weight_bytes: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        """``W6A6.9`` style (:func:`bits_label`)."""
        return bits_label(self.wbits, self.abits)


def bits_label(wbits: float, abits: float) -> str:
    """``W6A6.9``: effective bits, one decimal where they are not whole."""
    fmt = lambda b: f"{b:.0f}" if abs(b - round(b)) < 0.05 else f"{b:.1f}"  # noqa: E731
    return f"W{fmt(wbits)}A{fmt(abits)}"


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    per_sample = out[0].numel() if out.dim() > 1 else out.numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_sample * (module.in_channels // module.groups) * kh * kw
    return per_sample * module.in_features


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@torch.no_grad()
def count_macs(model: nn.Module, run: Callable[[], Any]) -> dict[str, int]:
    """Multiply-accumulates per sample of every Conv2d / Linear of ``model`` during ``run()`` (a forward
    pass on a batch). A layer called several times counts every call."""
    macs: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):

            def hook(m: nn.Module, _: Any, out: torch.Tensor, name: str = name) -> None:
                macs[name] = macs.get(name, 0) + _layer_macs(m, out)

            handles.append(module.register_forward_hook(hook))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return macs


def layer_bits(module: nn.Module) -> tuple[int, int]:
    """(weight bits, input bits) of a layer: its quantizers' (the wider part of a split input), or FP's."""
    wq = getattr(module, "weight_quant", None)
    if wq is None:
        return FP_BITS, FP_BITS
    iq = getattr(module, "input_quant", None)
    if iq is None:
        return wq.bits, UNQUANTIZED_INPUT_BITS
    parts = getattr(iq, "parts", None)
    return wq.bits, max(q.bits for q in parts) if parts is not None else iq.bits


def layer_costs(model: nn.Module, macs: dict[str, int]) -> list[LayerCost]:
    """Every counted layer with its bit widths in ``model`` (quantized or not)."""
    costs = []
    for name, module in model.named_modules():
        if name in macs:
            wbits, abits = layer_bits(module)
            wq = getattr(module, "weight_quant", None)
            pairs = 0 if wq is None else _numel(wq.qparam_shape(module.weight.shape))
            costs.append(LayerCost(name, macs[name], module.weight.numel(), wbits, abits, pairs))
    return costs


def model_cost(layers: list[LayerCost]) -> ModelCost:
    """The sums and MAC-weighted means of :class:`ModelCost` over ``layers``."""
    total = sum(c.macs for c in layers)
    if total == 0:
        raise ValueError("no multiply-accumulates counted: run a forward pass through count_macs first")
    return ModelCost(
        macs=total,
        bops=sum(c.bops for c in layers),
        wbits=sum(c.macs * c.wbits for c in layers) / total,
        abits=sum(c.macs * c.abits for c in layers) / total,
        weight_bytes=sum(c.weight_bytes for c in layers),
    )


def row_macs(unet: nn.Module, data: Any, device: torch.device | str | None = None) -> dict[str, int]:
    """:func:`count_macs` of ``unet`` on the first row of a calibration set ``data``
    (:class:`adpdm.calib.data.CalibrationSet`): one denoiser call, per sample."""
    from ..context import step_context

    device = device or next(unet.parameters()).device
    x, t, step, cond = data.model_inputs(torch.arange(1), device)

    def run() -> None:
        with step_context(step.to(device)):
            unet(x, t, **cond)

    return count_macs(unet, run)


def unet_cost(unet: nn.Module, data: Any, device: torch.device | str | None = None) -> ModelCost:
    """:class:`ModelCost` of ``unet`` (quantized or FP) on the first row of ``data`` (see :func:`row_macs`)."""
    return model_cost(layer_costs(unet, row_macs(unet, data, device)))
