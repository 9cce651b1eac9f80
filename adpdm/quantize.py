"""Model-level verbs: quantize_model -> calibrate -> (reconstruct) -> freeze.

Example::

    cfg = adpdm.QuantConfig.preset("w8a8", groups=4, num_steps=100)
    qunet = adpdm.quantize_model(unet, cfg)
    with adpdm.calibrate(qunet):
        for k, (x, t) in enumerate(inputs):
            with adpdm.step_context(k):
                qunet(x, t)
    adpdm.freeze(qunet)
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import logging
from collections.abc import Iterator

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from .config import QuantConfig, selects_attention
from .models.unet import check_supported, skip_concat_splits
from .nn.act_quant import ActQuantizer, SplitActQuantizer
from .nn.attention import QuantAttnProcessor
from .nn.layers import QuantConv2d, QuantLayer, QuantLinear
from .nn.partition import StepPartition
from .nn.weight_quant import WeightQuantizer
from .state import QuantState

logger = logging.getLogger(__name__)

PARTITION_ATTR = "adpdm_partition"
CONFIG_ATTR = "adpdm_config"


def is_quantized(model: nn.Module) -> bool:
    return getattr(model, CONFIG_ATTR, None) is not None


def get_config(model: nn.Module) -> QuantConfig:
    cfg = getattr(model, CONFIG_ATTR, None)
    if cfg is None:
        raise ValueError("this model is not quantized: call adpdm.quantize_model(model, cfg) first")
    return cfg


def _selected(name: str, cfg: QuantConfig) -> bool:
    included = any(fnmatch.fnmatchcase(name, p) for p in cfg.include)
    return included and not any(fnmatch.fnmatchcase(name, p) for p in cfg.exclude)


class _Factory:
    """Builds quantizers from a config; shares or creates the step partition."""

    def __init__(self, cfg: QuantConfig, shared: StepPartition | None) -> None:
        self.cfg, self.shared = cfg, shared

    def act(self, bits: int, symmetric: bool | None = None) -> ActQuantizer:
        cfg = self.cfg
        own = self.shared is None
        partition = StepPartition(cfg.num_steps, cfg.groups) if own else self.shared
        sym = cfg.act_symmetric if symmetric is None else symmetric
        return ActQuantizer(bits, sym, partition, own, cfg.act_init, cfg.lp_norm, cfg.reservoir)

    def layer_input(self, bits: int, split: int | None) -> ActQuantizer | SplitActQuantizer | None:
        if bits >= 16:
            return None
        if split is None or not self.cfg.split_skip:
            return self.act(bits)
        return SplitActQuantizer(split, self.act(bits), self.act(bits))

    def weight(self, bits: int) -> WeightQuantizer:
        cfg = self.cfg
        return WeightQuantizer(bits, cfg.weight_symmetric, cfg.weight_init, cfg.lp_norm, cfg.weight_group_size)


def quantize_model(model: nn.Module, cfg: QuantConfig) -> nn.Module:
    """Wrap every selected Conv2d / Linear and attention of a diffusers UNet, in place.

    Each layer gets the bit widths of :meth:`QuantConfig.bits_for`, each attention those of
    :meth:`QuantConfig.attention_abits`. The model stays in full precision (state FP) until
    :func:`calibrate`.

    Args:
        model: a diffusers ``UNet2DModel`` or ``UNet2DConditionModel``.
        cfg: the quantization config; recipe fields left unset take the library defaults
            (:meth:`QuantConfig.resolved`), and the model keeps the resolved config.

    Returns:
        The same model object.
    """
    check_supported(model)
    if is_quantized(model):
        raise ValueError("model is already quantized")
    cfg = cfg.resolved()
    layers = [(n, m) for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear) and _selected(n, cfg)]
    attentions = [(n, m) for n, m in model.named_modules() if isinstance(m, Attention) and _selected(n, cfg)]
    if not cfg.quantize_attention:
        attentions = []
    _check_layer_bits(cfg, [n for n, _ in layers], [n for n, _ in attentions])
    device = next(model.parameters()).device  # the new quantizers are created on the CPU
    shared = StepPartition(cfg.num_steps, cfg.groups) if cfg.partition == "shared" else None
    factory = _Factory(cfg, shared)
    splits = skip_concat_splits(model)
    for name, module in layers:
        wbits, abits = cfg.bits_for(name)
        cls = QuantConv2d if isinstance(module, nn.Conv2d) else QuantLinear
        new = cls.from_float(module, factory.weight(wbits), factory.layer_input(abits, splits.get(name)))
        model.set_submodule(name, new)
    for name, module in attentions:
        abits = cfg.attention_abits(name)
        if abits < 16:
            a = factory.act
            module.set_processor(QuantAttnProcessor(a(abits), a(abits), a(abits), a(cfg.softmax_bits)))
    if shared is not None:
        model.add_module(PARTITION_ATTR, shared)
    setattr(model, CONFIG_ATTR, cfg)
    model.to(device)
    other = sum(cfg.bits_for(n) != (cfg.wbits, cfg.abits) for n, _ in layers)
    logger.info("quantized %d layers (%s; %d at other bit widths)", len(layers), _describe(cfg), other)
    return model


def _check_layer_bits(cfg: QuantConfig, layers: list[str], attentions: list[str]) -> None:
    """Every ``layer_bits`` pattern must match a quantized layer or attention: typos are not silent."""
    for pattern, _, _ in cfg.layer_bits:
        if any(fnmatch.fnmatchcase(n, pattern) for n in layers):
            continue
        if any(selects_attention(pattern, n) for n in attentions):
            continue
        names = difflib.get_close_matches(pattern, layers + attentions, n=5, cutoff=0.5) or layers[:5]
        raise ValueError(
            f"QuantConfig.layer_bits pattern {pattern!r} matches no quantized layer: none of {len(layers)} "
            f"layers and {len(attentions)} attentions; names look like: {', '.join(names)}. Patterns are "
            "fnmatch patterns of module names, such as 'mid_block.*'"
        )


def _describe(cfg: QuantConfig) -> str:
    return f"W{cfg.wbits}A{cfg.abits}, {cfg.groups} group(s) over {cfg.num_steps} steps"


def quant_layers(model: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    """All quantized Conv2d / Linear layers with their names."""
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            yield name, m


def act_quantizers(model: nn.Module) -> Iterator[tuple[str, ActQuantizer]]:
    """All activation quantizers with their names."""
    for name, m in model.named_modules():
        if isinstance(m, ActQuantizer):
            yield name, m


def partitions(model: nn.Module) -> list[StepPartition]:
    """The step partitions (one when shared, one per quantizer otherwise)."""
    shared = getattr(model, PARTITION_ATTR, None)
    if shared is not None:
        return [shared]
    return [m for m in model.modules() if isinstance(m, StepPartition)]


def get_state(model: nn.Module) -> QuantState:
    """The lifecycle state of a quantized model."""
    states = {m.state for m in model.modules() if hasattr(m, "state") and isinstance(m.state, QuantState)}
    if not states:
        raise ValueError("this model is not quantized: call adpdm.quantize_model(model, cfg) first")
    if len(states) > 1:
        raise RuntimeError(f"inconsistent quantization states: {sorted(s.value for s in states)}")
    return states.pop()


def set_state(model: nn.Module, state: QuantState) -> None:
    """Move every quantizer and quantized layer of ``model`` to ``state``."""
    for m in model.modules():
        if isinstance(getattr(m, "state", None), QuantState):
            m.state = state


@contextlib.contextmanager
def calibrate(model: nn.Module) -> Iterator[nn.Module]:
    """Observe activations per sampling step, then initialise all ranges.

    Inside the block the model computes in full precision and records statistics; on normal exit
    weight ranges (per channel) and every group's activation range are initialised and the model
    moves to CALIBRATED (simulated quantization). On an exception the statistics are dropped and
    the previous state is restored.
    """
    get_config(model)
    previous = get_state(model)
    if previous == QuantState.FROZEN:
        raise ValueError("a frozen model cannot be calibrated again")
    for _, q in act_quantizers(model):
        q.stats.clear()
    set_state(model, QuantState.CALIBRATING)
    try:
        yield model
    except BaseException:
        for _, q in act_quantizers(model):
            q.stats.clear()
        set_state(model, previous)
        raise
    init_ranges(model)
    set_state(model, QuantState.CALIBRATED)


@torch.no_grad()
def init_ranges(model: nn.Module, weights: bool = True, activations: bool = True) -> None:
    """Initialise weight ranges from the weights and activation ranges from observed statistics."""
    if weights:
        for _, layer in quant_layers(model):
            layer.weight_quant.init_range(layer.weight_to_quantize())
    if activations:
        for name, q in act_quantizers(model):
            if not q.stats.observed:
                raise RuntimeError(f"quantizer {name} saw no activations during calibration")
            q.init_ranges()


@torch.no_grad()
def freeze(model: nn.Module) -> nn.Module:
    """Integer weights, rounded zero points, hard step->group table; the model becomes FROZEN."""
    state = get_state(model)
    if state == QuantState.FROZEN:
        return model
    if state not in (QuantState.CALIBRATED, QuantState.RECONSTRUCTING):
        raise ValueError(f"cannot freeze a model in state {state.value}: run adpdm.calibrate(model) first")
    for p in partitions(model):
        if p.searching:
            p.harden()
    for _, layer in quant_layers(model):
        layer.freeze_weight()
    for _, q in act_quantizers(model):
        q.freeze()
    set_state(model, QuantState.FROZEN)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@contextlib.contextmanager
def quantization_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily compute in full precision (not available once frozen: the FP weights are gone)."""
    state = get_state(model)
    if state == QuantState.FROZEN:
        raise ValueError("a frozen model has no full-precision weights")
    set_state(model, QuantState.FP)
    try:
        yield model
    finally:
        set_state(model, state)
