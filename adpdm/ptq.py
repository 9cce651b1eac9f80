"""Data-free post-training quantization of a diffusion UNet with one registered method.

    1. wrap the UNet's layers (``quantize_model``)
    2. record denoiser inputs of the FP sampler from seeded noise (data-free calibration data)
    3. choose the calibration steps (uniform / normal / random / srm)
    4. observe activations on those steps and initialise all ranges (``calibrate``)
    5. block-wise reconstruction with learned rounding, scales and group search (if the method has it)
    6. freeze, and write the report

Step 5 checkpoints after every finished unit to ``out_dir/.resume`` so that ``resume=True``
continues an interrupted run and ends identical to an uninterrupted one (every random draw is
keyed by the seed and the unit index; steps 1-4 are deterministic and are simply redone).

Example::

    result = adpdm.run_ptq(model.unet, model.scheduler_config, "adpdm", adpdm.QuantConfig.preset("w4a8"))
    adpdm.save_quantized(result.model, "out/")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from .calib import timesteps as ts
from .calib.data import CalibrationSet, concat, describe, record_trajectories
from .config import QuantConfig
from .context import step_context
from .methods import MethodSpec, get_method
from .models.units import find_units
from .nn.act_quant import ActQuantizer
from .nn.partition import StepPartition
from .quantize import (
    act_quantizers,
    calibrate,
    freeze,
    partitions,
    quant_layers,
    quantization_disabled,
    quantize_model,
    set_state,
)
from .recon.capture import execution_order
from .recon.reconstruct import ReconConfig, UnitLoss, reconstruct
from .sampling import SamplerConfig, eps_sensitivity
from .state import QuantState
from .utils.resources import machine_description, peak_memory_mb, reset_peak_memory

logger = logging.getLogger(__name__)


RANGE_STEPS = ("selected", "all")
SRM_RISKS = ("output", "trajectory")
UNOBSERVED = ("nearest", "least_error", "output_error")


@dataclass
class CalibConfig:
    """Calibration data and step selection.

    Args:
        num_samples: FP sampling trajectories recorded (each contributes every step).
        calib_steps: number n of sampling steps whose inputs form the calibration set.
        timesteps: strategy override ("uniform", "normal", "random", "srm"); default: the method's.
        sampler: the sampler that generates the data; its ``num_steps`` is K.
        signature_samples: trajectories used for SRM signatures and per-step risks.
        srm_gamma: weight of the MMD term in SRM.
        srm_risk: SRM's empirical risk of step k: "output" (relative error of the initial quantized
            denoiser's output against FP) or "trajectory" (that error times the squared sensitivity
            ``b_k`` of the sampler's next state to the output, :func:`adpdm.sampling.eps_sensitivity`:
            the deviation the step adds to the trajectory). "output" favours the last steps, where the
            relative error is largest and matters least (``b_k`` falls 60-fold over a 20-step DDIM run).
        seed: seed of step selection strategies that draw at random.
        range_steps: which steps initialise the activation ranges of a model with several timestep
            groups: "selected" (the calibration steps only) or "all" (also every step of the first
            ``signature_samples`` trajectories, so each group's range covers all the steps it serves,
            method.md section 2). Methods with one group always use the selected steps.
        unobserved: how a searched partition assigns the steps outside the calibration set:
            "nearest" (the nearest calibrated step's group), "least_error" (the group that
            quantizes the step's activations best, observed on the signature trajectories after
            reconstruction; ranges are left as they are) or "output_error" (the group with the
            least output error of the quantized model at that step on those trajectories).
    """

    num_samples: int = 32
    calib_steps: int = 10
    timesteps: str | None = None
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    signature_samples: int = 8
    srm_gamma: float = 1.0
    srm_risk: str = "output"
    seed: int = 0
    range_steps: str = "selected"
    unobserved: str = "nearest"

    def __post_init__(self) -> None:
        if isinstance(self.sampler, dict):
            self.sampler = SamplerConfig(**self.sampler)
        if self.num_samples < 1:
            raise ValueError(f"CalibConfig.num_samples must be >= 1, got {self.num_samples}")
        if not 1 <= self.calib_steps <= self.sampler.num_steps:
            k = self.sampler.num_steps
            raise ValueError(f"CalibConfig.calib_steps must be in [1, {k}], got {self.calib_steps}")
        if self.timesteps is not None and self.timesteps not in ts.STRATEGIES:
            raise ValueError(f"CalibConfig.timesteps must be one of {ts.STRATEGIES}, got {self.timesteps!r}")
        if self.signature_samples < 1:
            raise ValueError(f"CalibConfig.signature_samples must be >= 1, got {self.signature_samples}")
        if self.srm_risk not in SRM_RISKS:
            raise ValueError(f"CalibConfig.srm_risk must be one of {SRM_RISKS}, got {self.srm_risk!r}")
        if self.unobserved not in UNOBSERVED:
            raise ValueError(f"CalibConfig.unobserved must be one of {UNOBSERVED}, got {self.unobserved!r}")
        if self.range_steps not in RANGE_STEPS:
            raise ValueError(f"CalibConfig.range_steps must be one of {RANGE_STEPS}, got {self.range_steps!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PTQResult:
    """The frozen model and its report (also written to ``out_dir/report.json``)."""

    model: nn.Module
    report: dict[str, Any]


def _forward_rows(model: nn.Module, calib: CalibrationSet, batch: int, device: torch.device) -> torch.Tensor:
    outs = []
    for rows in calib.batches(batch):
        x, t, step, cond = calib.model_inputs(rows, device)
        with step_context(step.to(device)):
            outs.append(model(x, t, **cond).sample.float().cpu())
    return torch.cat(outs)


@torch.no_grad()
def _observe(model: nn.Module, calib: CalibrationSet, batch: int, device: torch.device) -> None:
    with calibrate(model):
        _forward_rows(model, calib, batch, device)


@torch.no_grad()
def _srm(
    model: nn.Module, calib: CalibrationSet, cfg: CalibConfig, scheduler_config: dict, batch: int, device: torch.device
) -> ts.SRMResult:
    """Signatures and risks of every step on a few trajectories, then the greedy SRM selection."""
    subset = calib.subset(calib.sample < cfg.signature_samples)
    _observe(model, subset, batch, device)  # initial quantized model (contiguous groups)
    sig = torch.cat([q.stats.signature() for _, q in act_quantizers(model)], dim=1)  # (K, 6 * quantizers)
    q_out = _forward_rows(model, subset, batch, device)
    with quantization_disabled(model):
        fp_out = _forward_rows(model, subset, batch, device)
    err = (q_out - fp_out).flatten(1).pow(2).sum(1) / fp_out.flatten(1).pow(2).sum(1).clamp_min(1e-12)
    k = calib.num_steps
    risk = torch.zeros(k).index_add_(0, subset.step, err) / torch.bincount(subset.step, minlength=k).clamp_min(1)
    if cfg.srm_risk == "trajectory":
        risk = risk * eps_sensitivity(scheduler_config, cfg.sampler).to(risk).pow(2)
    return ts.srm_select(ts.normalise_features(sig), risk, cfg.calib_steps, cfg.srm_gamma)


def _step_ranges(model: nn.Module, max_layers: int = 6) -> dict[str, dict[str, list[float]]]:
    """Observed per-step activation min / max of a few quantizers spread over the network."""
    quantizers = list(act_quantizers(model))
    pick = quantizers[:: max(1, len(quantizers) // max_layers)][:max_layers]
    out = {}
    for name, q in pick:
        sig = q.stats.signature()  # (K, 6): mean, std, min, max, p1, p99
        out[name] = {"min": sig[:, 2].tolist(), "max": sig[:, 3].tolist()}
    return out


def _select_steps(
    strategy: str,
    model: nn.Module,
    calib: CalibrationSet,
    cfg: CalibConfig,
    scheduler_config: dict,
    batch: int,
    device: torch.device,
) -> tuple[list[int], dict[str, Any]]:
    k, n = calib.num_steps, cfg.calib_steps
    if strategy == "srm":
        res = _srm(model, calib, cfg, scheduler_config, batch, device)
        return res.steps, {**dataclasses.asdict(res), "step_ranges": _step_ranges(model)}
    if strategy == "uniform":
        steps = ts.uniform_steps(k, n)
    elif strategy == "normal":
        steps = ts.normal_steps(k, n, cfg.seed)
    else:
        steps = ts.random_steps(k, n, cfg.seed)
    return steps, {"steps": steps}


@torch.no_grad()
def _observe_keeping_ranges(model: nn.Module, data: CalibrationSet, batch: int, device: torch.device) -> None:
    """Fresh activation statistics of ``data`` (full precision, as in calibration); ranges stay as they are."""
    for _, q in act_quantizers(model):
        q.stats.clear()
    set_state(model, QuantState.CALIBRATING)
    try:
        _forward_rows(model, data, batch, device)
    finally:
        set_state(model, QuantState.CALIBRATED)


@torch.no_grad()
def _fill_unobserved(model: nn.Module, steps: list[int], rule: str = "nearest", **output: Any) -> dict[int, str]:
    """Give each step outside the calibration set a group (their alpha rows receive no gradient).

    ``rule`` (``CalibConfig.unobserved``): "nearest", the group of the nearest calibrated step;
    "least_error", the group whose quantizers reproduce the step's observed activations best
    (least sum over the partition's quantizers of the error relative to the step's variance;
    nearest where a step was not observed); "output_error", the group with the least output
    error of the whole quantized model at that step (shared partition only; ``output`` holds
    ``data``, ``batch`` and ``device`` for :func:`_output_errors`). Returns the rule used per step.
    """
    observed = torch.tensor(sorted(steps))
    users: dict[int, list[ActQuantizer]] = {}
    shared = partitions(model)
    for _, q in act_quantizers(model):
        users.setdefault(id(shared[0]) if len(shared) == 1 else id(q.partition), []).append(q)
    rules: dict[int, str] = {}
    for p in shared if len(shared) == 1 else [q.partition for _, q in act_quantizers(model)]:
        if p.groups == 1:
            continue
        k = torch.arange(p.num_steps)
        nearest = observed[(k[:, None] - observed[None, :]).abs().argmin(dim=1)]  # a calibrated step is its own
        p.table.copy_(p.table[nearest.to(p.table.device)])
        for step in sorted(set(range(p.num_steps)) - set(steps)):
            err = None
            if rule == "least_error":
                err = _group_errors(users[id(p)], step, p.groups)
            elif rule == "output_error" and len(shared) == 1:
                err = _output_errors(model, p, step, **output)
            if err is not None:
                p.table[step] = int(err.argmin())
            rules[step] = rule.replace("_", " ") if err is not None else "nearest"
    return rules


def _output_errors(
    model: nn.Module, part: StepPartition, step: int, data: CalibrationSet, batch: int, device: torch.device
) -> torch.Tensor | None:
    """(G,) relative output error of the quantized model at ``step`` on ``data``'s rows, with each group."""
    rows = data.subset(data.step == step)
    if len(rows) == 0:
        return None
    with quantization_disabled(model):
        ref = _forward_rows(model, rows, batch, device)
    err = torch.zeros(part.groups, dtype=torch.float64)
    keep = int(part.table[step])
    for g in range(part.groups):
        part.table[step] = g
        out = _forward_rows(model, rows, batch, device)
        err[g] = float((out - ref).double().pow(2).sum() / ref.double().pow(2).sum().clamp_min(1e-12))
    part.table[step] = keep
    return err


def _group_errors(quantizers: list[ActQuantizer], step: int, groups: int) -> torch.Tensor | None:
    """(G,) sum over ``quantizers`` of each group's relative quantization error on step ``step``'s values."""
    err = torch.zeros(groups, dtype=torch.float64)
    for q in quantizers:
        values = q.stats.values(step)
        if values is None or values.numel() < 2:
            return None
        var = values.double().var().clamp_min(1e-12)
        for g in range(groups):
            out = q._hard(values, torch.tensor([g], device=values.device))
            err[g] += float((out - values).double().pow(2).mean() / var)
    return err


def _partition_report(model: nn.Module) -> list[int] | dict[str, list[int]]:
    """The step->group table (shared), or one table per quantizer (per-layer partition)."""
    shared = partitions(model)
    if len(shared) == 1:
        return shared[0].table.tolist()
    return {name: q.partition.table.tolist() for name, q in act_quantizers(model)}


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Resume:
    """Per-unit checkpoints of a reconstruction in progress."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder, self.fingerprint = folder, fingerprint

    def load(self, model: nn.Module) -> tuple[int, list[dict]]:
        meta_path = self.folder / "progress.json"
        if not meta_path.is_file():
            logger.info("nothing to resume in %s: starting from the first unit", self.folder)
            return 0, []
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") != self.fingerprint:
            raise ValueError(f"{self.folder} holds a run with other settings; remove it or drop --resume")
        model.load_state_dict(load_file(self.folder / "state.safetensors"), strict=True)
        logger.info("resuming after unit %d", meta["next_unit"])
        return int(meta["next_unit"]), meta["losses"]

    def save(self, model: nn.Module, next_unit: int, losses: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "state.tmp"
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, tmp)
        tmp.replace(self.folder / "state.safetensors")
        meta = {"fingerprint": self.fingerprint, "next_unit": next_unit, "losses": losses}
        (self.folder / "progress.tmp").write_text(json.dumps(meta))
        (self.folder / "progress.tmp").replace(self.folder / "progress.json")

    def clear(self) -> None:
        for name in ("state.safetensors", "progress.json"):
            (self.folder / name).unlink(missing_ok=True)


def run_ptq(
    unet: nn.Module,
    scheduler_config: dict,
    method: str | MethodSpec,
    qcfg: QuantConfig,
    calib: CalibConfig | None = None,
    recon: ReconConfig | None = None,
    groups: int | None = None,
    num_classes: int | None = None,
    null_class: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    data: CalibrationSet | None = None,
) -> PTQResult:
    """Quantize ``unet`` in place with ``method`` and return it frozen, with a report.

    Args:
        unet: a diffusers UNet in full precision.
        scheduler_config: the model's scheduler config (calibration data comes from its sampler).
        method: a registry name (``rtn``, ``ptq4dm``, ``qdiffusion``, ``adpdm``, ablations) or spec.
        qcfg: bit widths and what to quantize; ``num_steps`` must equal the sampler's steps.
        calib: calibration data settings (default :class:`CalibConfig`).
        recon: reconstruction settings (default :class:`ReconConfig`); ignored by rtn / ptq4dm.
        groups: number of timestep groups for methods that take it (default ``qcfg.groups`` or 4).
        num_classes: classes of a conditional model; ``null_class`` its unconditional label.
        out_dir: where ``report.json`` (and resume checkpoints) go; nothing is written if ``None``.
        resume: continue from the last finished unit checkpointed in ``out_dir``.
        device: where to compute (default: the unet's device).
        progress: show progress bars.
        data: calibration data recorded elsewhere (e.g. from a pipeline by
            :func:`adpdm.pipelines.record_pipeline`); default: recorded here from ``calib.sampler``.
    """
    spec = get_method(method) if isinstance(method, str) else method
    calib_cfg = calib or CalibConfig(sampler=SamplerConfig(num_steps=qcfg.num_steps))
    recon_cfg = recon or ReconConfig()
    if groups is None and spec.groups is None and qcfg.groups == 1:
        groups = 4
    cfg = spec.quant_config(qcfg, groups)
    if calib_cfg.sampler.num_steps != cfg.num_steps:
        raise ValueError(
            f"the sampler has {calib_cfg.sampler.num_steps} steps but QuantConfig.num_steps is {cfg.num_steps}"
        )
    if resume and out_dir is None:
        raise ValueError("resume needs out_dir")
    if data is not None and data.num_steps != cfg.num_steps:
        raise ValueError(
            f"the calibration data have {data.num_steps} steps but QuantConfig.num_steps is {cfg.num_steps}"
        )
    device = torch.device(device) if device is not None else next(unet.parameters()).device
    strategy = calib_cfg.timesteps or spec.timesteps
    recon_cfg = dataclasses.replace(recon_cfg, search_groups=spec.search and cfg.groups > 1)
    batch = recon_cfg.capture_batch

    reset_peak_memory()
    start = time.perf_counter()
    unet.to(device).eval()
    quantize_model(unet, cfg)
    if data is None:
        data = record_trajectories(
            unet, scheduler_config, calib_cfg.num_samples, calib_cfg.sampler, num_classes, null_class, progress
        )
    steps, selection = _select_steps(strategy, unet, data, calib_cfg, scheduler_config, batch, device)
    chosen = data.select_steps(steps)
    trajectories = data.subset(data.sample < calib_cfg.signature_samples)  # every step of the first few
    observed = chosen
    if cfg.groups > 1 and calib_cfg.range_steps == "all":
        observed = concat([trajectories, chosen])
    _observe(unet, observed, batch, device)
    losses: list[dict] = []
    if spec.reconstruct:
        weights = None
        if recon_cfg.step_weighting == "sampler":
            sens = eps_sensitivity(scheduler_config, calib_cfg.sampler).pow(2)[chosen.step].float()
            weights = sens / sens.mean()
        losses = _reconstruct(unet, chosen, recon_cfg, device, out_dir, resume, progress, weights,
                              _fingerprint(spec, cfg.to_dict(), calib_cfg.to_dict(), recon_cfg.to_dict(),
                                           unet.to_json_string()))  # fmt: skip
    if spec.search and cfg.groups > 1:
        if calib_cfg.unobserved == "least_error":
            _observe_keeping_ranges(unet, trajectories, batch, device)
        selection["unobserved_steps"] = _fill_unobserved(unet, steps, calib_cfg.unobserved, data=trajectories,
                                                         batch=batch, device=device)  # fmt: skip
    freeze(unet)
    seconds = time.perf_counter() - start
    report = {
        "adpdm_version": __version__,
        "method": spec.name,
        "method_spec": dataclasses.asdict(spec),
        "quant_config": cfg.to_dict(),
        "calibration": {**calib_cfg.to_dict(), "strategy": strategy, "data": describe(chosen)},
        "reconstruction": recon_cfg.to_dict() if spec.reconstruct else None,
        "selected_steps": steps,
        "selection": selection,
        "partition": _partition_report(unet),
        "unit_losses": losses,
        "num_quantized_layers": sum(1 for _ in quant_layers(unet)),
        "calib_seconds": seconds,
        "peak_mem_mb": peak_memory_mb(),
        "machine": machine_description(),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2))
    logger.info("%s: calibrated in %.1fs, steps %s", spec.name, seconds, steps)
    return PTQResult(unet, report)


def _reconstruct(
    unet: nn.Module,
    chosen: CalibrationSet,
    cfg: ReconConfig,
    device: torch.device,
    out_dir: str | Path | None,
    resume: bool,
    progress: bool,
    weights: torch.Tensor | None,
    fingerprint: str,
) -> list[dict]:
    units = execution_order(unet, find_units(unet), chosen, device)
    if cfg.learn_rounding:  # every layer starts learned rounding from its FP weights, also on resume
        for _, layer in quant_layers(unet):
            layer.weight_quant.enable_adaround(layer.weight)
    ckpt = _Resume(Path(out_dir) / ".resume", fingerprint) if out_dir is not None else None
    start, losses = ckpt.load(unet) if (ckpt and resume) else (0, [])

    def done(i: int, loss: UnitLoss) -> None:
        losses.append(dataclasses.asdict(loss))
        if ckpt is not None:
            ckpt.save(unet, i + 1, losses)

    reconstruct(unet, units, chosen, cfg, device, start_unit=start, on_unit_done=done, progress=progress,
                row_weights=weights)  # fmt: skip
    if ckpt is not None:
        ckpt.clear()
    return losses
