"""Block-wise reconstruction with learned rounding, activation scales and the step->group search.

For each unit b in execution order (method.md sections 2 and 4), minimise over the learned
rounding of its weights, the activation scales s_{a,g} of its quantizers and (when searching)
the group logits alpha (:mod:`.group_search`):

    L_b = mean_rows w_r sum_c (F_b(x) - F^q_b(x^q))^2    discretisation error (BRECQ form, rows weighted)
        + rho * sum_V (1 - |2 h(V) - 1|^beta)             AdaRound only: regulariser, beta 20 -> 2
        + lambda * L_b(0) * mean_k H(softmax(alpha_k / tau))   group entropy (see group_search)

x^q are the unit's inputs in the quantized model (earlier units already reconstructed), F_b(x)
the FP model's outputs. Row r of sampling step k counts by its relative error times ``b_k^2``:
``w_r = b_k^2 / ||F_b(x_r)||^2`` scaled to mean 1 (:func:`row_weights`), where ``b_k`` is how far an
error in the denoiser's output at step k moves the sampler (:func:`adpdm.sampling.eps_sensitivity`).
The papers' plain squared error lets the rows with large outputs dominate (on ``embedded:mnist`` the
last step's: reconstruction lowered its error and raised steps 0-17's by 20-40%); the relative error
alone lets the last step dominate the other way (its output has little energy, so its relative error
is ~1,000x the others', while an error there barely moves the sample: ``b_19`` 0.01 against 0.17-0.6;
qdiffusion at W8A8 lowered that step's error by 9% and raised every other's by 20-70%,
``studies/row-error``). On validation noise (seed 7, both embedded models, qdiffusion and adpdm,
W8A6 / W4A8 / W4A6, draws 1-2) the ``b_k^2`` weights beat the relative error
in 23 of 26 pairs, by 1.78 dB PSNR against FP on average, so both other row errors were deleted.

The rounding is SignRound by default (:mod:`adpdm.tensor.signround`: hard in every forward pass,
so what is optimised is what is deployed, starting at round to nearest); AdaRound
(:mod:`adpdm.tensor.adaround`, the papers' recipe) optimises soft weights that start at the FP
weights and are hardened at the end.

No unit ends worse than it started on calibration rows it was not fitted to. Its rows are split
into fit rows (the only ones the optimisation sees) and held-out rows (whole trajectories when
there are several). Errors are measured as :func:`adpdm.freeze` deploys the unit: hard rounding,
hard step->group table. The start is round to nearest with the scales and table the unit came
with; the optimised result is hardened and kept only if its held-out error (the unit's own output
error, rows weighted as above) is below the start's, else the start is restored exactly. (Judging
units by the whole model's held-out error instead tied on validation noise: adpdm 29.5 against
30.0 dB, pairs up to 4 dB apart either way, and took 20% more time, so it was deleted
(``studies/unit-judge``). The whole model still decides the step->group table, :mod:`.group_search`.)
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ..calib.data import CalibrationSet
from ..context import step_context
from ..models.units import Unit
from ..nn.act_quant import ActQuantizer
from ..nn.layers import QuantLayer
from ..nn.partition import StepPartition
from ..nn.weight_quant import ROUNDINGS
from ..quantize import quantization_disabled, set_state
from ..state import QuantState
from ..tensor import signround
from ..tensor.adaround import BetaSchedule
from .capture import UnitInputs, capture_inputs, capture_outputs, unit_forward
from .group_search import GroupSearch, searched_partitions
from .start import STARTS

logger = logging.getLogger(__name__)


# settings deleted after they lost on validation noise (in 0.6.0), with the value that lives on
DELETED_SETTINGS = {"row_error": "sampler", "accept_on": "unit", "sign_momentum": 0.0}
SPLIT_STREAM = 0x5EED_0000  # offsets the held-out split's seed from the row sampler's
# Named reconstruction budgets: iterations per unit (what each costs: docs/methods.md, studies/budget-curve).
# iterations per unit, named by what they cost: on embedded:mnist at W4A8, one core, about 1, 3 and 11 minutes
# of calibration; neither 200 nor 1000 moved the samples beyond the reconstruction's seed spread there
# (studies/budget-curve), and the benchmark uses "fast"
BUDGETS: dict[str, int] = {"fast": 50, "default": 200, "thorough": 1000}


@dataclass
class ReconConfig:
    """Reconstruction settings (defaults suit the embedded models on 2 CPU cores).

    Args:
        iters: optimisation iterations per unit.
        batch_size: calibration rows per iteration.
        lr_rounding: Adam learning rate of the AdaRound logits (SignRound takes signed steps of
            ``1 / iters`` decayed linearly to 0, Cheng et al. 2023).
        lr_scale: Adam learning rate of activation scales, relative to each scale's size. Adam moves
            a scale by about this fraction every iteration whatever the gradient's size, so 1e-3
            drifted every scale by ~5% in 50 iterations and lost 5-10 dB at W6A6 for both
            reconstruction methods; 1e-4 was best on average over qdiffusion and adpdm at W4A8 and
            W6A6 on validation noise (``studies/reconstruction-settings``, seed 2; the benchmark
            samples with seed 0). Q-Diffusion's 4e-5 absolute is of this order for its scales.
        lr_alpha: Adam learning rate of the group logits.
        search_fraction: share of each unit's iterations that search the step->group table (the
            mixture); the table is then hardened and the remaining iterations fit the scales and
            rounding to the table that is deployed. The mixture costs several quantizers per
            activation: searching all iterations made adpdm's reconstruction 1.5x qdiffusion's on
            ``embedded:mnist`` (W6A6, 50 iterations: 99 s against 64 s; without the search 59-66 s).
            Half: on validation noise at W4A8 (same starts, model judge) 22.6 / 21.4 dB against 22.9 /
            24.7 with every iteration; the search left the DP partition as it was in both, and one
            early unit's accept decision going the other way moves a run by that much.
        rho: weight of the AdaRound regulariser.
        entropy_weight: lambda, weight of the group-weight entropy (relative to the unit's error).
        tau_start: softmax temperature at the start of the search.
        tau_end: temperature at the end.
        learn_rounding: learn the weight rounding (else round to nearest).
        rounding: "sign" (SignRound: a learned offset in [-0.5, 0.5] before a straight-through round,
            always hard) or "adaround" (soft rectified-sigmoid rounding, hardened at the end). With
            qdiffusion on embedded:mnist, validation noise, draws 1-2, 50 and 200 iterations, sign beat
            adaround in 9 of 12 pairs, by 2.0 dB PSNR on average (W8A8 +2.5 to +5.1, W4A8 +2.0 to
            +5.4; W6A6 -5.2 to +1.3). AdaRound left 87% of its variables undecided after 50 iterations
            (24-32% after 200) and its hard weights had up to 2.3x the error of its soft ones at W4A8
            (``studies/rounding``).
        learn_act_scales: learn activation scales (LSQ).
        holdout: fraction of each unit's calibration trajectories (of its rows if there is only one
            trajectory) held out of the optimisation to decide whether the result is kept; 0 decides
            on the fit rows themselves.
        capture_batch: batch size of the capture forward passes.
        seed: seed of the row sampling and of the held-out split (per unit: seed and unit index).
        sample_judge: fresh trajectories of the calibration sampler whose final samples judge two
            whole-model choices (:mod:`.start`): the activation ranges to start from (``start``) and
            whether the reconstructed model is kept over its start (it is only if its samples are at
            least as close to FP). 0 turns both off, as does calibration data recorded elsewhere
            (``run_ptq(data=...)``).
        start: the activation ranges reconstruction starts from: "recipe" (the method's range
            initialisation) or "best" (the recipe's or min-max ranges, whichever the sample judge
            prefers). Either way the whole result is kept only if the sample judge scores it at
            least as high as its start.
    """

    iters: int = 200
    batch_size: int = 32
    lr_rounding: float = 1e-2
    lr_scale: float = 1e-4
    lr_alpha: float = 5e-2
    search_fraction: float = 0.5
    rho: float = 0.01
    entropy_weight: float = 0.1
    tau_start: float = 1.0
    tau_end: float = 0.1
    learn_rounding: bool = True
    rounding: str = "sign"
    learn_act_scales: bool = True
    holdout: float = 0.25
    capture_batch: int = 64
    seed: int = 0
    sample_judge: int = 32
    start: str = "best"

    def __post_init__(self) -> None:
        if self.start not in STARTS:
            raise ValueError(f"ReconConfig.start must be one of {STARTS}, got {self.start!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"ReconConfig.rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if not 0 < self.search_fraction <= 1:
            raise ValueError(f"ReconConfig.search_fraction must be in (0, 1], got {self.search_fraction}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"ReconConfig.holdout must be in [0, 1), got {self.holdout}")
        if self.sample_judge < 0:
            raise ValueError(f"ReconConfig.sample_judge must be >= 0, got {self.sample_judge}")
        if self.start == "best" and self.sample_judge == 0:
            raise ValueError('ReconConfig.start "best" needs sample_judge > 0 (or start="recipe")')
        for name in ("iters", "batch_size", "capture_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"ReconConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_rounding", "lr_scale", "lr_alpha", "tau_start", "tau_end"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ReconConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("rho", "entropy_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"ReconConfig.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def budget(cls, name: str, **overrides: Any) -> ReconConfig:
        """The settings of a named budget (:data:`BUDGETS`: ``fast`` 50, ``default`` 200, ``thorough``
        1000 iterations per unit; about 1, 3 and 11 minutes per run on one core for ``embedded:mnist``)
        with optional field overrides."""
        if name not in BUDGETS:
            raise ValueError(f"unknown reconstruction budget {name!r}; choose one of {list(BUDGETS)}")
        return cls(**{"iters": BUDGETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> ReconConfig:
        """Inverse of :meth:`to_dict`, also for reports and results of older versions: a setting since
        deleted is accepted at the value that lives on (:data:`DELETED_SETTINGS`), refused at another."""
        saved = dict(saved)
        for name, survivor in DELETED_SETTINGS.items():
            if name in saved and saved.pop(name) != survivor:
                raise ValueError(
                    f"ReconConfig.{name} other than {survivor!r} was deleted after it lost on validation noise "
                    "(docs/methods.md): a run made with it cannot be repeated or resumed"
                )
        return cls(**saved)


@dataclass
class UnitLoss:
    """One unit's reconstruction, every error measured with hard rounding and the hard table.

    ``rec_before`` / ``rec_after``: the unit's held-out error at the start / of what is kept (never
    above the start); ``fit_before`` / ``fit_after``: error on the fit rows at the start / of the
    reconstructed result; ``heldout_reconstructed``: the held-out error of the reconstructed result,
    kept or not;
    ``kept``: "start" or "reconstructed"; ``undecided``: share of AdaRound variables with h(V) in
    (0.01, 0.99) before hardening (0 for SignRound, None without learned rounding); ``table``: whether the
    search changed the step->group table and the whole model kept the change (:mod:`.group_search`).
    """

    name: str
    kind: str
    rec_before: float
    rec_after: float
    seconds: float
    capture_seconds: float = 0.0  # part of ``seconds`` spent running the model to capture inputs/targets
    fit_before: float = 0.0
    fit_after: float = 0.0
    heldout_reconstructed: float = 0.0
    kept: str = "start"
    undecided: float | None = None
    table: str | None = None  # the searched step->group table: "unchanged", "kept" or "reverted"; None: no search


def holdout_split(calib: CalibrationSet, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fit rows, held-out rows)``: about ``fraction`` of the trajectories (``calib.sample``) held out
    whole, at least one and never all; by row if there is one trajectory. ``fraction`` 0, or a single
    row, gives every row to both."""
    rows = torch.arange(len(calib))
    sample = getattr(calib, "sample", None)
    keys = sample if sample is not None and len(torch.unique(sample)) > 1 else rows
    ids = torch.unique(keys)
    if fraction == 0 or len(ids) < 2:
        return rows, rows
    n_held = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    held = torch.isin(keys, ids[perm[:n_held]])
    return rows[~held], rows[held]


def heldout_trajectories(
    data: CalibrationSet, steps: list[int], fraction: float, seed: int
) -> tuple[CalibrationSet, torch.Tensor | None]:
    """Reconstruction rows with the held-out rows marked: the calibration ``steps`` of most
    trajectories (fit rows) and every step of about ``fraction`` of them (held out, at least one
    trajectory, never all). Holding out whole trajectories at every step checks a result on the
    steps outside the calibration set too: a unit fitted to a few steps can improve there and
    lose everywhere else. With one trajectory, or ``fraction`` 0, the mask is None: the calibration
    steps' rows only, split per unit by :func:`holdout_split`."""
    ids = torch.unique(data.sample)
    chosen = torch.isin(data.step, torch.as_tensor(steps, dtype=torch.long))
    if fraction == 0 or len(ids) < 2:
        return data.subset(chosen), None
    n_held = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    held_traj = torch.isin(data.sample, ids[perm[:n_held]])
    keep = held_traj | chosen
    rows = data.subset(keep)
    return rows, held_traj[keep]


def _unit_seed(cfg: ReconConfig, index: int) -> int:
    return cfg.seed * 100_003 + index


def _unit_members(unit: torch.nn.Module) -> tuple[list[QuantLayer], list[ActQuantizer]]:
    layers = [m for m in unit.modules() if isinstance(m, QuantLayer)]
    quantizers = [m for m in unit.modules() if isinstance(m, ActQuantizer)]
    return layers, quantizers


def _rec_loss(out: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    diff = (out - target).pow(2)
    per = diff.sum(1) if diff.dim() > 1 else diff  # summed over channels, averaged over rows and positions
    if weights is not None:
        per = per * weights.reshape((-1,) + (1,) * (per.dim() - 1))
    return per.mean()


def _forward(unit: Unit, inputs: UnitInputs, rows: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    with step_context(steps[rows]):
        return unit_forward(unit.module, inputs, rows)


def row_weights(
    target: torch.Tensor, steps: torch.Tensor | None = None, step_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-row weights of the reconstruction error, scaled to mean 1: the inverse of each row's target
    energy (every row counts by its relative error) times ``step_weights[steps]``, the weight of each
    row's sampling step (``b_k^2``, as :func:`adpdm.ptq.run_ptq` passes; None: every step alike)."""
    weights = 1.0 / target.flatten(1).double().pow(2).sum(1).clamp_min(1e-12)
    if step_weights is not None:
        if steps is None:
            raise ValueError("row_weights: step_weights need the sampling step of every row (steps)")
        weights = weights * step_weights.double().to(weights.device)[steps.to(weights.device)]
    return (weights / weights.mean()).to(target.dtype)


@torch.no_grad()
def _error(unit: Unit, inputs: UnitInputs, target: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor,
           batch: int, weights: torch.Tensor | None = None) -> float:  # fmt: skip
    """Reconstruction error of ``rows`` in the unit's current state (rows weighted by ``weights``)."""
    total = sum(
        float(_rec_loss(_forward(unit, inputs, r, steps), target[r], None if weights is None else weights[r])) * len(r)
        for r in rows.split(batch)
    )
    return total / len(rows)


def _snapshot(layers: list[QuantLayer], quantizers: list[ActQuantizer], parts: list[StepPartition]) -> dict:
    wq = [lay.weight_quant for lay in layers]
    return {
        "rounding": [(None if q.rounding is None else q.rounding.detach().clone(), q.rounding_mode) for q in wq],
        "act": [(q.scale.detach().clone(), q.zero_point.detach().clone()) for q in quantizers],
        "partitions": [p.snapshot() for p in parts],
    }


@torch.no_grad()
def _restore(snap: dict, layers: list[QuantLayer], quantizers: list[ActQuantizer], parts: list[StepPartition]) -> None:
    for lay, (rounding, mode) in zip(layers, snap["rounding"], strict=True):
        wq = lay.weight_quant
        wq.rounding = None if rounding is None else torch.nn.Parameter(rounding.clone(), requires_grad=False)
        wq.rounding_mode = mode
    for q, (scale, zero) in zip(quantizers, snap["act"], strict=True):
        q.scale.copy_(scale)
        q.zero_point.copy_(zero)
    for p, saved in zip(parts, snap["partitions"], strict=True):
        p.restore(saved)


def reconstruct_unit(
    model: torch.nn.Module,
    unit: Unit,
    index: int,
    calib: CalibrationSet,
    cfg: ReconConfig,
    total_units: int,
    device: torch.device,
    search_groups: bool = False,
    held_rows: torch.Tensor | None = None,
    judge: Callable[..., float] | None = None,
    step_weights: torch.Tensor | None = None,
) -> UnitLoss:
    """Reconstruct one unit in place; the model must be CALIBRATED (simulating quantization).

    Every error (optimised, reported, and deciding whether the result is kept) counts each row by its
    relative error times ``step_weights[k]`` of its sampling step k (:func:`row_weights`; None: every
    step alike). ``search_groups`` runs the step->group search on the unit's partitions
    (:mod:`.group_search`). ``held_rows`` (a boolean mask over ``calib``'s rows) fixes the held-out
    rows, e.g. every step of a few trajectories (:func:`heldout_trajectories`); default: the
    per-unit split of :func:`holdout_split`. ``judge(steps)`` returns the whole model's held-out error at ``steps``
    in its current state: it decides whether a searched step->group table change is kept (without it,
    every change is)."""
    start = time.perf_counter()
    inputs = capture_inputs(model, unit.module, calib, cfg.capture_batch, device)
    with quantization_disabled(model):
        target = capture_outputs(model, unit.module, calib, cfg.capture_batch, device)
    captured = time.perf_counter() - start
    steps = calib.step.to(device)
    if held_rows is None:
        fit, held = holdout_split(calib, cfg.holdout, _unit_seed(cfg, index) + SPLIT_STREAM)
    else:
        fit, held = (~held_rows).nonzero().flatten(), held_rows.nonzero().flatten()
    layers, quantizers = _unit_members(unit.module)

    weights = row_weights(target, steps, step_weights)

    def error(rows: torch.Tensor) -> float:
        return _error(unit, inputs, target, steps, rows, cfg.capture_batch, weights)

    # 1. the start as it would be frozen: round to nearest, the scales and table the unit came with
    if cfg.learn_rounding:
        for lay in layers:
            lay.weight_quant.set_nearest(lay.weight_to_quantize())
    parts = searched_partitions(model, quantizers) if search_groups else []
    snap = _snapshot(layers, quantizers, parts)
    fit_before, held_before = error(fit), error(held)
    # 2. optimise on the fit rows
    search_iters = max(1, round(cfg.iters * cfg.search_fraction))
    search = GroupSearch(parts, index, total_units, search_iters, cfg.tau_start, cfg.tau_end, cfg.entropy_weight,
                         fit_before) if parts else None  # fmt: skip
    _optimise(unit, inputs, target, steps, fit, layers, quantizers, search, cfg, index, weights)
    masks = [m for m in (lay.weight_quant.undecided() for lay in layers) if m is not None]
    undecided = sum(int(m.sum()) for m in masks) / max(1, sum(m.numel() for m in masks)) if masks else None
    # 3. harden (rounding and table) and measure what would be frozen
    for lay in layers:
        lay.weight_quant.harden(lay.weight_to_quantize())
    table = None
    if search is not None:
        search.harden()
        table = search.keep_if_better(snap["partitions"], judge) if judge is not None else "kept"
    fit_after, held_after = error(fit), error(held)
    # 4. keep the result only if it is better on the held-out rows
    kept = "reconstructed" if held_after < held_before else "start"
    if kept == "start":
        _restore(snap, layers, quantizers, parts)
        table = "reverted" if table == "kept" else table  # the start's table came back with it
    seconds = time.perf_counter() - start
    loss = UnitLoss(unit.name, unit.kind, held_before, min(held_before, held_after), seconds, captured,
                    fit_before, fit_after, held_after, kept, undecided, table)  # fmt: skip
    logger.info("unit %d/%d %s: held-out %.4g -> %.4g (%s; reconstructed %.4g), fit %.4g -> %.4g, "
                "undecided %s, table %s (%.1fs, capture %.1fs)", index + 1, total_units, unit.name,
                loss.rec_before, loss.rec_after, kept, held_after, fit_before, fit_after,
                "-" if undecided is None else f"{undecided:.3f}", table or "-", seconds, captured)  # fmt: skip
    return loss


def _param_groups(
    layers: list[QuantLayer], quantizers: list[ActQuantizer], search: GroupSearch | None, cfg: ReconConfig
) -> tuple[list[dict], list[torch.nn.Parameter]]:
    """Adam parameter groups, and the SignRound offsets (signed gradient steps)."""
    groups, signed = [], []
    if cfg.learn_rounding:
        rounding = [lay.weight_quant.enable_rounding(lay.weight_to_quantize(), cfg.rounding) for lay in layers]
        if cfg.rounding == "sign":
            signed = rounding
        else:
            groups.append({"params": rounding, "lr": cfg.lr_rounding})
    if cfg.learn_act_scales:
        for q in quantizers:
            q.scale.requires_grad_(True)
            groups.append({"params": [q.scale], "lr": cfg.lr_scale * float(q.scale.detach().abs().mean())})
    if search is not None:
        groups.append({"params": search.params(), "lr": cfg.lr_alpha})
    return [g for g in groups if g["params"]], signed


def _optimise(
    unit: Unit,
    inputs: UnitInputs,
    target: torch.Tensor,
    steps: torch.Tensor,
    fit: torch.Tensor,
    layers: list[QuantLayer],
    quantizers: list[ActQuantizer],
    search: GroupSearch | None,
    cfg: ReconConfig,
    index: int,
    weights: torch.Tensor | None = None,
) -> None:
    """``cfg.iters`` steps on batches of the fit rows; the unit ends CALIBRATED (hard, not hardened)."""
    groups, signed = _param_groups(layers, quantizers, search, cfg)
    if not groups and not signed:
        return
    gen = torch.Generator().manual_seed(_unit_seed(cfg, index))
    opt = torch.optim.Adam(groups) if groups else None
    beta_at = BetaSchedule(cfg.iters)
    set_state(unit.module, QuantState.RECONSTRUCTING)
    try:
        with torch.enable_grad(), search.searching() if search is not None else contextlib.nullcontext():
            for it in range(cfg.iters):
                rows = fit[torch.randint(0, len(fit), (cfg.batch_size,), generator=gen)]
                searching = search is not None and search.active(it)
                if searching:
                    search.set_temperature(it)
                elif search is not None and it == search.iters:
                    search.harden()  # the rest fits the hard table
                loss = _rec_loss(_forward(unit, inputs, rows, steps), target[rows],
                                 None if weights is None else weights[rows])  # fmt: skip
                beta = beta_at(it)
                if cfg.learn_rounding and cfg.rounding == "adaround" and beta is not None:
                    loss = loss + cfg.rho * sum(lay.weight_quant.regularizer(beta) for lay in layers)
                entropy = search.entropy_loss() if searching else None
                if entropy is not None:
                    loss = loss + entropy
                for v in signed:
                    v.grad = None
                if opt is not None:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                if opt is not None:
                    opt.step()
                for v in signed:  # lr 1/iters decayed linearly to 0: v can travel about 0.5 in all
                    if v.grad is not None:
                        signround.sign_step(v, v.grad, (1 - it / cfg.iters) / cfg.iters)
                with torch.no_grad():
                    for q in quantizers:
                        q.scale.clamp_(min=1e-8)
    finally:
        set_state(unit.module, QuantState.CALIBRATED)
        for q in quantizers:
            q.scale.requires_grad_(False)


def reconstruct(
    model: torch.nn.Module,
    units: list[Unit],
    calib: CalibrationSet,
    cfg: ReconConfig,
    device: torch.device,
    start_unit: int = 0,
    on_unit_done: Callable[[int, UnitLoss], None] | None = None,
    progress: bool = True,
    search_groups: bool = False,
    held_rows: torch.Tensor | None = None,
    judge: Callable[..., float] | None = None,
    step_weights: torch.Tensor | None = None,
) -> list[UnitLoss]:
    """Reconstruct ``units[start_unit:]`` in order; ``on_unit_done(i, loss)`` after each (checkpoints).

    ``search_groups`` runs the differentiable step->group search (:mod:`.group_search`) with every unit;
    ``step_weights`` (K,) weigh the rows of each sampling step (:func:`row_weights`)."""
    losses = []
    bar = tqdm(total=len(units), initial=start_unit, desc="reconstruction", disable=not progress)
    for i in range(start_unit, len(units)):
        loss = reconstruct_unit(model, units[i], i, calib, cfg, len(units), device, search_groups, held_rows,
                                judge, step_weights)  # fmt: skip
        losses.append(loss)
        if on_unit_done is not None:
            on_unit_done(i, loss)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.rec_after:.3g}")
    bar.close()
    return losses
