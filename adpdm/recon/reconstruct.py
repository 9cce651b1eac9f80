"""Block-wise reconstruction with learned rounding, group scales and the step->group search.

For each unit b in execution order (method.md sections 2 and 4), minimise over the AdaRound
logits V, the activation scales s_{a,g} of the unit's quantizers, and the group logits alpha:

    L_b = mean_rows sum_c (F_b(x) - F^q_b(x^q))^2        discretisation error (BRECQ form)
        + rho * sum_V (1 - |2 h(V) - 1|^beta)             rounding regulariser, beta 20 -> 2
        + lambda * L_b(0) * mean_k H(softmax(alpha_k / tau))   entropy of the group weights

x^q are the unit's inputs in the quantized model (earlier units already reconstructed), F_b(x)
the FP model's outputs. The entropy term is scaled by the unit's initial error L_b(0) so that
one lambda suits units of very different output magnitude (our choice; the paper gives none).
tau is annealed over the whole run; after every unit the hard table follows argmax alpha.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from ..calib.data import CalibrationSet
from ..context import step_context
from ..models.units import Unit
from ..nn.act_quant import ActQuantizer
from ..nn.layers import QuantLayer
from ..nn.partition import StepPartition
from ..quantize import PARTITION_ATTR, quantization_disabled, set_state
from ..state import QuantState
from ..tensor.adaround import BetaSchedule, cosine_anneal
from .capture import UnitInputs, capture_inputs, capture_outputs, unit_forward

logger = logging.getLogger(__name__)


STEP_WEIGHTINGS = ("uniform", "sampler")


@dataclass
class ReconConfig:
    """Reconstruction settings (defaults suit the embedded models on 2 CPU cores).

    Args:
        iters: optimisation iterations per unit.
        batch_size: calibration rows per iteration.
        lr_rounding: Adam learning rate of the AdaRound logits.
        lr_scale: Adam learning rate of activation scales, relative to each scale's size. Adam moves
            a scale by about this fraction every iteration whatever the gradient's size, so 1e-3
            drifted every scale by ~5% in 50 iterations and lost 5-10 dB at W6A6 for both
            reconstruction methods; 1e-4 was best on average over qdiffusion and adpdm at W4A8 and
            W6A6 on validation noise (``benchmarks/results/recon_sweep``, seed 2; the benchmark
            samples with seed 0). Q-Diffusion's 4e-5 absolute is of this order for its scales.
        lr_alpha: Adam learning rate of the group logits.
        rho: weight of the rounding regulariser.
        entropy_weight: lambda, weight of the group-weight entropy (relative to the unit's error).
        tau_start: softmax temperature at the start of the search.
        tau_end: temperature at the end.
        learn_rounding: learn AdaRound rounding (else round to nearest).
        learn_act_scales: learn activation scales (LSQ).
        search_groups: run the differentiable step->group search.
        capture_batch: batch size of the capture forward passes.
        seed: seed of the row sampling (per unit: seed + unit index).
        step_weighting: "uniform" (every calibration row counts alike, the papers' loss) or
            "sampler": each row's error is weighted by ``b_k^2`` of its step k, how far an output
            error at step k moves the sampler's next state (:func:`adpdm.sampling.eps_sensitivity`;
            weights scaled to mean 1 over the calibration set).
    """

    iters: int = 200
    batch_size: int = 32
    lr_rounding: float = 1e-2
    lr_scale: float = 1e-4
    lr_alpha: float = 5e-2
    rho: float = 0.01
    entropy_weight: float = 0.1
    tau_start: float = 1.0
    tau_end: float = 0.1
    learn_rounding: bool = True
    learn_act_scales: bool = True
    search_groups: bool = False
    capture_batch: int = 64
    seed: int = 0
    step_weighting: str = "uniform"

    def __post_init__(self) -> None:
        if self.step_weighting not in STEP_WEIGHTINGS:
            raise ValueError(
                f"ReconConfig.step_weighting must be one of {STEP_WEIGHTINGS}, got {self.step_weighting!r}"
            )
        for name in ("iters", "batch_size", "capture_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"ReconConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_rounding", "lr_scale", "lr_alpha", "tau_start", "tau_end"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ReconConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("rho", "entropy_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"ReconConfig.{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UnitLoss:
    """Losses of one unit: reconstruction error before and after, and the final total."""

    name: str
    kind: str
    rec_before: float
    rec_after: float
    seconds: float
    capture_seconds: float = 0.0  # part of ``seconds`` spent running the model to capture inputs/targets


def _unit_members(unit: torch.nn.Module) -> tuple[list[QuantLayer], list[ActQuantizer]]:
    layers = [m for m in unit.modules() if isinstance(m, QuantLayer)]
    quantizers = [m for m in unit.modules() if isinstance(m, ActQuantizer)]
    return layers, quantizers


def _param_groups(
    layers: list[QuantLayer], quantizers: list[ActQuantizer], parts: list[StepPartition], cfg: ReconConfig
) -> list[dict]:
    groups = []
    if cfg.learn_rounding:
        for layer in layers:
            if layer.weight_quant.rounding is None:
                layer.weight_quant.enable_adaround(layer.weight)
        groups.append({"params": [lay.weight_quant.rounding for lay in layers], "lr": cfg.lr_rounding})
    if cfg.learn_act_scales:
        for q in quantizers:
            q.scale.requires_grad_(True)
            groups.append({"params": [q.scale], "lr": cfg.lr_scale * float(q.scale.detach().abs().mean())})
    if cfg.search_groups:
        groups.append({"params": [p.alpha for p in parts], "lr": cfg.lr_alpha})
    return [g for g in groups if g["params"]]


def _rec_loss(out: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    diff = (out - target).pow(2)
    per = diff.sum(1) if diff.dim() > 1 else diff  # summed over channels, averaged over rows and positions
    if weights is not None:
        per = per * weights.reshape((-1,) + (1,) * (per.dim() - 1))
    return per.mean()


def reconstruct_unit(
    model: torch.nn.Module,
    unit: Unit,
    index: int,
    calib: CalibrationSet,
    cfg: ReconConfig,
    total_units: int,
    device: torch.device,
    row_weights: torch.Tensor | None = None,
) -> UnitLoss:
    """Reconstruct one unit in place; the model must be CALIBRATED (simulating quantization).

    ``row_weights`` (one per calibration row, mean 1) weight the rows' errors in the optimised loss;
    the reported losses stay unweighted."""
    start = time.perf_counter()
    logger.debug("unit %d/%d %s: capturing inputs and targets", index + 1, total_units, unit.name)
    inputs = capture_inputs(model, unit.module, calib, cfg.capture_batch, device)
    with quantization_disabled(model):
        target = capture_outputs(model, unit.module, calib, cfg.capture_batch, device)
    captured = time.perf_counter() - start
    steps = calib.step.to(device)
    layers, quantizers = _unit_members(unit.module)
    parts = _searched_partitions(model, quantizers) if cfg.search_groups else []
    params = _param_groups(layers, quantizers, parts, cfg)

    def evaluate() -> float:
        with torch.no_grad():
            errs = [
                float(_rec_loss(_forward(unit, inputs, rows, steps), target[rows])) * len(rows)
                for rows in calib.batches(cfg.capture_batch)
            ]
        return sum(errs) / len(calib)

    rec_before = evaluate()
    if params:
        weights = None if row_weights is None else row_weights.to(target.device, target.dtype)
        _optimise(unit, inputs, target, steps, layers, quantizers, parts, params, cfg, index, total_units, rec_before,
                  weights)  # fmt: skip
    if cfg.search_groups:
        for p in parts:
            p.table.copy_(p.alpha.detach().argmax(dim=1))
    rec_after = evaluate()
    for q in quantizers:
        q.scale.requires_grad_(False)
    seconds = time.perf_counter() - start
    logger.info("unit %d/%d %s: loss %.4g -> %.4g (%.1fs, capture %.1fs)", index + 1, total_units, unit.name,
                rec_before, rec_after, seconds, captured)  # fmt: skip
    return UnitLoss(unit.name, unit.kind, rec_before, rec_after, seconds, captured)


def _searched_partitions(model: torch.nn.Module, quantizers: list[ActQuantizer]) -> list[StepPartition]:
    """The shared partition, or (per-layer partition) those of the unit's own quantizers."""
    shared = getattr(model, PARTITION_ATTR, None)
    if shared is not None:
        return [shared]
    return list({id(q.partition): q.partition for q in quantizers}.values())


def _forward(unit: Unit, inputs: UnitInputs, rows: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    with step_context(steps[rows]):
        return unit_forward(unit.module, inputs, rows)


def _optimise(
    unit: Unit,
    inputs: UnitInputs,
    target: torch.Tensor,
    steps: torch.Tensor,
    layers: list[QuantLayer],
    quantizers: list[ActQuantizer],
    parts: list[StepPartition],
    params: list[dict],
    cfg: ReconConfig,
    index: int,
    total_units: int,
    rec_scale: float,
    weights: torch.Tensor | None = None,
) -> None:
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + index)
    opt = torch.optim.Adam(params)
    beta_at = BetaSchedule(cfg.iters)
    set_state(unit.module, QuantState.RECONSTRUCTING)
    for p in parts:
        p.searching = True
    try:
        with torch.enable_grad():
            for it in range(cfg.iters):
                rows = torch.randint(0, target.shape[0], (cfg.batch_size,), generator=gen)
                progress = (index * cfg.iters + it) / max(1, total_units * cfg.iters)
                for p in parts:
                    p.tau = cosine_anneal(int(progress * 1000), 1000, cfg.tau_start, cfg.tau_end)
                loss = _rec_loss(
                    _forward(unit, inputs, rows, steps), target[rows], None if weights is None else weights[rows]
                )
                beta = beta_at(it)
                if cfg.learn_rounding and beta is not None:
                    loss = loss + cfg.rho * sum(lay.weight_quant.regularizer(beta) for lay in layers)
                if parts and cfg.entropy_weight > 0:
                    loss = loss + cfg.entropy_weight * rec_scale * sum(p.entropy() for p in parts)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for q in quantizers:
                        q.scale.clamp_(min=1e-8)
    finally:
        for p in parts:
            p.searching = False
        set_state(unit.module, QuantState.CALIBRATED)


def reconstruct(
    model: torch.nn.Module,
    units: list[Unit],
    calib: CalibrationSet,
    cfg: ReconConfig,
    device: torch.device,
    start_unit: int = 0,
    on_unit_done: Callable[[int, UnitLoss], None] | None = None,
    progress: bool = True,
    row_weights: torch.Tensor | None = None,
) -> list[UnitLoss]:
    """Reconstruct ``units[start_unit:]`` in order; ``on_unit_done(i, loss)`` after each (checkpoints)."""
    losses = []
    bar = tqdm(total=len(units), initial=start_unit, desc="reconstruction", disable=not progress)
    for i in range(start_unit, len(units)):
        loss = reconstruct_unit(model, units[i], i, calib, cfg, len(units), device, row_weights)
        losses.append(loss)
        if on_unit_done is not None:
            on_unit_done(i, loss)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.rec_after:.3g}")
    bar.close()
    return losses
