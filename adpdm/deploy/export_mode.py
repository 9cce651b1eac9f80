"""Export mode: the frozen activation quantizers as ONNX QuantizeLinear / DequantizeLinear pairs.

``torch.onnx.export`` (TorchScript exporter) turns ``torch.fake_quantize_per_tensor_affine``
into a QuantizeLinear / DequantizeLinear pair. Inside :func:`export_mode` every activation
quantizer uses the static scale and zero point of one fixed configuration (one group per
quantizer), and every quantized layer's weight is the integer tensor of :func:`int8_weight`
(per channel, or per block of input channels for grouped weight scales) in float;
:mod:`adpdm.deploy.graph` then stores those weights as 8-bit or 4-bit integers.
:func:`float_mode` bypasses every quantizer (the fp32 baseline of the same network).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..nn.act_quant import ActQuantizer
from ..nn.layers import QuantLayer
from ..quantize import act_quantizers, quant_layers
from ..tensor.grouping import expand_blocks

WEIGHT_FORMATS = ("auto", "uint8", "int8", "int8r", "uint4")
UNSIGNED_FORMATS = ("uint8", "uint4")  # the formats of grouped weight scales (blocked DequantizeLinear)
# Largest |code| of a signed format. "int8r" (reduced range) keeps u8 x s8 pair sums inside
# int16: CPUs without VNNI multiply with vpmaddubsw, which saturates beyond 255 * 64 * 2.
_SIGNED_MAX = {"int8": 127, "int8r": 64}


@dataclass
class Int8Weight:
    """A weight as integer codes: ``w = (codes - zero) * scale``, per output channel or per block.

    Args:
        codes: uint8 or int8 tensor, the weight's shape.
        scale: (out_channels,) float32; with ``block_size``, (O, ceil(I / B), *kernel).
        zero: zero points, the shape of ``scale`` and the dtype of ``codes``.
        exact: True when the codes give the frozen weight exactly.
        block_size: B input channels per scale (grouped weight scales), None per channel.
        storage_bits: 8, or 4 for codes and zero points stored as 4-bit integers (ONNX uint4).
    """

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    exact: bool
    block_size: int | None = None
    storage_bits: int = 8

    def dequantize(self) -> torch.Tensor:
        """The float weight these codes represent."""
        if self.block_size is not None:
            n = self.codes.shape[1]
            scale = expand_blocks(self.scale, self.block_size, n)
            zero = expand_blocks(self.zero.to(torch.float32), self.block_size, n)
            return (self.codes.to(torch.float32) - zero) * scale
        shape = (-1,) + (1,) * (self.codes.dim() - 1)
        return (self.codes.to(torch.float32) - self.zero.to(torch.float32).reshape(shape)) * self.scale.reshape(shape)


def _signed_codes(layer: QuantLayer, limit: int) -> Int8Weight:
    wq = layer.weight_quant
    codes = layer.weight_codes.cpu()
    scale = wq.scale.flatten().to(torch.float32).cpu()
    d = codes.to(torch.float32) - wq.zero_point.cpu().reshape((-1,) + (1,) * (codes.dim() - 1))  # (O, ...)
    flat = d.flatten(1)
    amax = flat.abs().amax(1).clamp_min(1.0)  # (O,)
    fits = amax <= limit
    ratio = torch.where(fits, torch.ones_like(amax), amax / limit)
    q = torch.round(flat / ratio[:, None]).clamp(-limit, limit).reshape(d.shape).to(torch.int8)
    return Int8Weight(q, scale * ratio, torch.zeros_like(scale, dtype=torch.int8), bool(fits.all()))


def int8_weight(layer: QuantLayer, weight_format: str = "uint8") -> Int8Weight:
    """Integer codes of a frozen layer's weight, in ``weight_format``.

    ``"uint8"`` keeps the checkpoint's asymmetric codes and zero points exactly (W4 codes are a
    subset of uint8); ``"uint4"`` does too, and stores the layers of 4 bits or fewer as 4-bit
    integers (others as uint8). ``"int8"`` / ``"int8r"`` make them symmetric with zero point 0:
    the integer ``d = c - z`` is kept exactly when it fits [-127, 127] (int8) or [-64, 64]
    (int8r; every W4 weight fits); otherwise that channel is re-rounded onto the format's levels
    with scale ``s * max|d| / limit``. ``"auto"`` is ``"uint4"`` for grouped weight scales,
    else ``"int8r"`` when every layer fits exactly and ``"uint8"`` otherwise
    (:func:`resolve_format`). Grouped weight scales export in the unsigned formats only.
    """
    if weight_format not in WEIGHT_FORMATS or weight_format == "auto":
        raise ValueError(f"weight_format must be one of {WEIGHT_FORMATS[1:]}, got {weight_format!r}")
    wq = layer.weight_quant
    if wq.group_size is not None and weight_format not in UNSIGNED_FORMATS:
        raise ValueError(
            f"grouped weight scales export as {' or '.join(UNSIGNED_FORMATS)} (blocked DequantizeLinear), "
            f"not {weight_format!r}"
        )
    if weight_format in _SIGNED_MAX:
        return _signed_codes(layer, _SIGNED_MAX[weight_format])
    storage_bits = 4 if weight_format == "uint4" and wq.bits <= 4 else 8
    scale, zero = wq.scale.to(torch.float32).cpu(), wq.zero_point.cpu()
    if wq.group_size is None:
        scale, zero = scale.flatten(), zero.flatten()
    codes = layer.weight_codes.cpu()
    if wq.qmin < 0:  # symmetric checkpoint codes: shift into the unsigned range
        shift = 2 ** (storage_bits - 1)
        codes, zero = codes.to(torch.int16) + shift, zero + shift
    return Int8Weight(codes.to(torch.uint8), scale, zero.round().to(torch.uint8), True, wq.group_size, storage_bits)


def resolve_format(model: nn.Module, weight_format: str) -> str:
    """``"auto"`` -> ``"uint4"`` with grouped weight scales, else ``"int8r"`` if every layer's weight
    fits it exactly, else ``"uint8"``."""
    if weight_format != "auto":
        return weight_format
    if any(layer.weight_quant.group_size is not None for _, layer in quant_layers(model)):
        return "uint4"
    exact = all(_signed_codes(layer, _SIGNED_MAX["int8r"]).exact for _, layer in quant_layers(model))
    return "int8r" if exact else "uint8"


def configurations(model: nn.Module) -> tuple[list[tuple[int, ...]], list[int]]:
    """The activation configurations to export (one group per quantizer) and step -> configuration.

    With the usual shared partition there is one configuration per group, in group order (a
    group that no step uses is exported too); with per-layer partitions, every distinct
    combination of groups that some step uses, in lexicographic order.
    """
    quantizers = [q for _, q in act_quantizers(model)]
    if not quantizers:
        return [()], []
    parts = {id(q.partition): q.partition for q in quantizers}
    if len(parts) == 1:
        part = next(iter(parts.values()))
        return [(g,) * len(quantizers) for g in range(part.groups)], part.table.cpu().tolist()
    tables = [q.partition.table.cpu().tolist() for q in quantizers]
    per_step = [tuple(t[k] for t in tables) for k in range(len(tables[0]))]
    configs = sorted(set(per_step))
    index = {c: i for i, c in enumerate(configs)}
    return configs, [index[c] for c in per_step]


def _act_forward(q: ActQuantizer, group: int):  # noqa: ANN202
    scale, zero = float(q.scale[group]), int(q.zero_point[group])
    lo, hi = (-128, 127) if q.qmin < 0 else (0, 255)
    clip = (q.qmin, q.qmax) != (lo, hi)  # fewer than 8 bits: clip to the code range, then 8-bit Q/DQ
    xmin, xmax = (q.qmin - zero) * scale, (q.qmax - zero) * scale

    def forward(x: torch.Tensor) -> torch.Tensor:
        if clip:
            x = x.clamp(xmin, xmax)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, lo, hi)

    return forward


def _weight_forward(layer: QuantLayer, weight: Int8Weight):  # noqa: ANN202
    value = weight.dequantize().to(layer.weight.device)

    def quant_weight() -> torch.Tensor:
        return value

    return quant_weight


def _output_forward(layer: nn.Module, scale: float, zero: int):  # noqa: ANN202
    forward = type(layer).forward

    def quantized_output(x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(forward(layer, x), scale, zero, 0, 255)

    return quantized_output


@contextlib.contextmanager
def export_mode(
    model: nn.Module,
    config: Sequence[int],
    weights: dict[str, Int8Weight],
    outputs: dict[str, tuple[float, int]] | None = None,
) -> Iterator[nn.Module]:
    """Activation quantizers as Q/DQ pairs of configuration ``config`` (one group per quantizer).

    Each quantized layer's weight becomes ``weights[name]`` dequantized: a float constant that
    the exporter folds and :func:`adpdm.deploy.graph.store_int8_weights` turns back into int8.
    ``outputs`` maps layer names to the uint8 (scale, zero point) of an extra output Q/DQ pair.
    """
    quantizers = [q for _, q in act_quantizers(model)]
    if len(config) != len(quantizers):
        raise ValueError(f"configuration has {len(config)} groups for {len(quantizers)} quantizers")
    patched: list[tuple[nn.Module, str]] = []
    try:
        for q, g in zip(quantizers, config, strict=True):
            q.forward = _act_forward(q, g)
            patched.append((q, "forward"))
        for name, layer in quant_layers(model):
            layer.quant_weight = _weight_forward(layer, weights[name])
            patched.append((layer, "quant_weight"))
        for name, (scale, zero) in (outputs or {}).items():
            layer = model.get_submodule(name)
            layer.forward = _output_forward(layer, scale, zero)
            patched.append((layer, "forward"))
        yield model
    finally:
        for module, attr in patched:
            delattr(module, attr)


@contextlib.contextmanager
def float_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Every quantizer bypassed: the frozen network in fp32 with its dequantized weights."""
    patched: list[nn.Module] = []
    try:
        for _, q in act_quantizers(model):
            q.forward = _identity
            patched.append(q)
        yield model
    finally:
        for q in patched:
            del q.forward


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
