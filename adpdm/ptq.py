"""Data-free post-training quantization of a diffusion UNet with one method's recipe.

:func:`run_ptq` is these steps, in this order:

    1. the recipe: the method completes the user's QuantConfig (a conflicting setting is an error)
    2. wrap the UNet's layers (``quantize_model``)
    3. record denoiser inputs of the FP sampler from seeded noise (data-free calibration data)
    4. initial ranges: observe the method's rows (every step of every trajectory for adpdm, the
       calibration steps for its peers); with G > 1 groups the partition starts from the per-step
       statistics (``calib.groups``), and every group's range from all the steps it serves
    5. choose the calibration steps (uniform / normal / random, or SRM on the initial model)
    6. block-wise reconstruction of the calibration steps' rows, each weighted by how far its step
       moves the sampler: learned rounding, activation scales and (adpdm) the step->group search,
       whose table changes the whole model must confirm; a unit keeps its start unless the result
       is better on held-out trajectories, at every sampling step (``recon``). It starts from the
       recipe's or min-max activation ranges, whichever gives samples closer to FP on fresh
       calibration noise, and the whole result is kept only if its samples are closer to FP than
       the start's (``recon.start``)
    7. freeze, and write the report (the recipe in it can be read back: :func:`settings_from_report`)

Step 6 checkpoints after every finished unit to ``out_dir/.resume`` so that ``resume=True``
continues an interrupted run and ends identical to an uninterrupted one (every random draw is
keyed by the seed and the unit index; steps 1-5 are deterministic and are simply redone).

Example::

    result = run_ptq(model.unet, model.scheduler_config, "adpdm", adpdm.QuantConfig.preset("w4a8"))
    adpdm.save_quantized(result.model, "out/")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .analysis.cost import unet_cost
from .calib import srm
from .calib import timesteps as ts
from .calib.data import CalibrationSet, describe, forward_rows, record_trajectories, relative_error
from .calib.groups import partition_from_statistics
from .calib.smooth import smooth_layers
from .config import QuantConfig
from .methods import MethodSpec, get_method
from .models.units import find_units
from .quantize import (
    act_quantizers,
    calibrate,
    freeze,
    partitions,
    quant_layers,
    quantization_disabled,
    quantize_model,
)
from .recon.capture import execution_order
from .recon.reconstruct import SPLIT_STREAM, ReconConfig, UnitLoss, heldout_trajectories, reconstruct
from .recon.resume import ResumeCheckpoints, fingerprint
from .recon.start import SampleJudge, SamplerCheck
from .sampling import SamplerConfig, eps_sensitivity
from .utils.resources import machine_description, peak_memory_mb, provenance, reset_peak_memory

logger = logging.getLogger(__name__)


@dataclass
class CalibConfig:
    """Calibration data and step selection.

    Args:
        num_samples: FP sampling trajectories recorded (each contributes every step).
        calib_steps: number n of sampling steps whose inputs form the calibration set.
        sampler: the sampler that generates the data; its ``num_steps`` is K.
        signature_samples: trajectories used for SRM signatures and per-step risks.
        srm_gamma: weight of the MMD term in SRM.
        seed: seed of step selection strategies that draw at random (``normal``, ``random``).

    Which strategy picks the steps is the method's (``MethodSpec.timesteps``); the ablation
    ``adpdm-uniform`` is adpdm with uniform steps.
    """

    num_samples: int = 32
    calib_steps: int = 10
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    signature_samples: int = 8
    srm_gamma: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.sampler, dict):
            self.sampler = SamplerConfig(**self.sampler)
        if self.num_samples < 1:
            raise ValueError(f"CalibConfig.num_samples must be >= 1, got {self.num_samples}")
        if not 1 <= self.calib_steps <= self.sampler.num_steps:
            k = self.sampler.num_steps
            raise ValueError(f"CalibConfig.calib_steps must be in [1, {k}], got {self.calib_steps}")
        if self.signature_samples < 1:
            raise ValueError(f"CalibConfig.signature_samples must be >= 1, got {self.signature_samples}")
        if self.srm_gamma < 0:
            raise ValueError(f"CalibConfig.srm_gamma must be >= 0, got {self.srm_gamma}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PTQResult:
    """The frozen model and its report (also written to ``out_dir/report.json``)."""

    model: nn.Module
    report: dict[str, Any]


def run_ptq(
    unet: nn.Module,
    scheduler_config: dict,
    method: str | MethodSpec,
    qcfg: QuantConfig,
    calib: CalibConfig | None = None,
    recon: ReconConfig | None = None,
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
        method: a registry name (``rtn``, ``ptq4dm``, ``qdiffusion``, ``adpdm``, ablations) or a
            :class:`MethodSpec` (e.g. read back from a report).
        qcfg: bit widths, layer protocol and what to quantize; ``num_steps`` must equal the
            sampler's steps. Recipe fields left unset are the method's; ``groups`` sets G for the
            methods that take it (default 4).
        calib: calibration data settings (default :class:`CalibConfig`).
        recon: reconstruction settings (default :class:`ReconConfig`); rtn and ptq4dm have none.
        num_classes: classes of a conditional model; ``null_class`` its unconditional label.
        out_dir: where ``report.json`` (and resume checkpoints) go; nothing is written if ``None``.
        resume: continue from the last finished unit checkpointed in ``out_dir``.
        device: where to compute (default: the unet's device).
        progress: show progress bars.
        data: calibration data recorded elsewhere (e.g. from a pipeline by
            :func:`adpdm.pipelines.record_pipeline`); default: recorded here from ``calib.sampler``.
    """
    # 1. the recipe
    spec = get_method(method) if isinstance(method, str) else method
    cfg = spec.quant_config(qcfg)
    calib_cfg = calib or CalibConfig(sampler=SamplerConfig(num_steps=cfg.num_steps))
    recon_cfg = recon or ReconConfig()
    _check_run(cfg, calib_cfg, data, out_dir, resume)
    device = torch.device(device) if device is not None else next(unet.parameters()).device
    batch = recon_cfg.capture_batch
    reset_peak_memory()
    start = time.perf_counter()

    # 2. wrap the layers; 3. record the FP sampler's trajectories
    unet.to(device).eval()
    quantize_model(unet, cfg)
    recorded_here = data is None  # the sampler judge needs the sampler the data came from
    if data is None:
        data = record_trajectories(
            unet, scheduler_config, calib_cfg.num_samples, calib_cfg.sampler, num_classes, null_class, progress
        )
    first = data.subset(data.sample < calib_cfg.signature_samples)  # every step of the first trajectories
    smoothing = None
    if cfg.smoothing:  # before any range is observed: the quantizers see the smoothed inputs
        smoothing = smooth_layers(unet, lambda: forward_rows(unet, data, batch, device))

    # 4. initial ranges (and partition) from every step, for the methods that take them so
    initial_partition = None
    if spec.ranges_from == "all":
        initial_partition = _observe(unet, data, batch, device)

    # 5. the calibration steps
    if spec.timesteps == "srm":
        if spec.ranges_from == "selected":
            _observe(unet, first, batch, device)  # the initial quantized model SRM scores
        result = srm.srm_select(srm.normalise_features(srm.step_signatures(unet)),
                                srm.step_risks(unet, first, batch, device), calib_cfg.calib_steps,
                                calib_cfg.srm_gamma)  # fmt: skip
        steps, selection = result.steps, dataclasses.asdict(result)
    else:
        steps = ts.choose_steps(spec.timesteps, data.num_steps, calib_cfg.calib_steps, calib_cfg.seed)
        selection = {"steps": steps}
    chosen = data.select_steps(steps)
    if spec.ranges_from == "selected":
        _observe(unet, chosen, batch, device)
    if initial_partition is not None:
        selection["initial_partition"] = initial_partition
        selection["step_ranges"] = _step_ranges(unet)

    # 6. reconstruction
    losses: list[dict] = []
    outcome = None
    if spec.reconstruct:
        key = fingerprint(
            spec.to_dict(), cfg.to_dict(), calib_cfg.to_dict(), recon_cfg.to_dict(), unet.to_json_string()
        )
        sensitivity = eps_sensitivity(scheduler_config, calib_cfg.sampler)
        samples = None
        if recon_cfg.sample_judge and not recorded_here:
            logger.info("calibration data recorded elsewhere: the start and the result are not judged on samples")
        if recon_cfg.sample_judge and recorded_here:
            samples = SampleJudge(unet, scheduler_config, calib_cfg.sampler, recon_cfg.sample_judge,
                                  calib_cfg.num_samples, num_classes, null_class, device)  # fmt: skip
        search = spec.search and cfg.groups > 1
        losses, outcome = _reconstruct(unet, data, steps, recon_cfg, search, device, out_dir, resume, progress, key,
                                       sensitivity, samples)  # fmt: skip

    # 7. freeze and report
    freeze(unet)
    seconds = time.perf_counter() - start
    cost = unet_cost(unet, data, device)
    report = {
        **provenance(),
        "method": spec.name,
        "method_spec": spec.to_dict(),
        "quant_config": cfg.to_dict(),
        "protocol": cfg.protocol,
        "calibration": {**calib_cfg.to_dict(), "strategy": spec.timesteps, "data": describe(chosen)},
        "reconstruction": recon_cfg.to_dict() if spec.reconstruct else None,
        "outcome": outcome,
        "selected_steps": steps,
        "selection": selection,
        "partition": _partition_report(unet),
        "unit_losses": losses,
        "smoothing": smoothing,  # per layer: the chosen strength (None: not smoothed); None: off
        "num_quantized_layers": sum(1 for _ in quant_layers(unet)),
        "cost": cost.to_dict(),  # per sample and denoiser call; bits averaged over the multiply-accumulates
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


def settings_from_report(report: dict[str, Any]) -> tuple[MethodSpec, QuantConfig, CalibConfig, ReconConfig | None]:
    """The recipe and settings of a finished run (its ``report.json``), to run it again."""
    try:
        spec = MethodSpec.from_dict(report["method_spec"])
        qcfg = QuantConfig.from_dict(report["quant_config"])
        known = {f.name for f in dataclasses.fields(CalibConfig)}
        calib = CalibConfig(**{k: v for k, v in report["calibration"].items() if k in known})
        recon = ReconConfig.from_dict(report["reconstruction"]) if report.get("reconstruction") else None
    except (KeyError, TypeError) as err:
        raise ValueError(f"not a report of adpdm.ptq.run_ptq, or from another version: {err}") from err
    return spec, qcfg, calib, recon


def _check_run(
    cfg: QuantConfig, calib: CalibConfig, data: CalibrationSet | None, out_dir: str | Path | None, resume: bool
) -> None:
    if calib.sampler.num_steps != cfg.num_steps:
        raise ValueError(
            f"the sampler has {calib.sampler.num_steps} steps but QuantConfig.num_steps is {cfg.num_steps}"
        )
    if data is not None and data.num_steps != cfg.num_steps:
        raise ValueError(
            f"the calibration data have {data.num_steps} steps but QuantConfig.num_steps is {cfg.num_steps}"
        )
    if resume and out_dir is None:
        raise ValueError("resume needs out_dir")


@torch.no_grad()
def _observe(model: nn.Module, rows: CalibrationSet, batch: int, device: torch.device) -> dict | None:
    """Observe ``rows`` and initialise every range; when every step was observed and the model has
    timestep groups, the partition first takes the segments of the per-step statistics."""
    tables = None
    with calibrate(model):
        forward_rows(model, rows, batch, device)
        if len(set(rows.step.tolist())) == rows.num_steps and any(p.groups > 1 for p in partitions(model)):
            tables = partition_from_statistics(model)
    return tables


def _step_ranges(model: nn.Module, max_layers: int = 6) -> dict[str, dict[str, list[float]]]:
    """Observed per-step activation min / max of a few quantizers spread over the network."""
    quantizers = list(act_quantizers(model))
    pick = quantizers[:: max(1, len(quantizers) // max_layers)][:max_layers]
    out = {}
    for name, q in pick:
        sig = q.stats.signature()  # (K, 6): mean, std, min, max, p1, p99
        out[name] = {"min": sig[:, 2].tolist(), "max": sig[:, 3].tolist()}
    return out


def _partition_report(model: nn.Module) -> list[int] | dict[str, list[int]]:
    """The step->group table (shared), or one table per quantizer (per-layer partition)."""
    shared = partitions(model)
    if len(shared) == 1:
        return shared[0].table.tolist()
    return {name: q.partition.table.tolist() for name, q in act_quantizers(model)}


def _model_judge(
    unet: nn.Module, held: CalibrationSet, sensitivity: torch.Tensor, batch: int, device: torch.device
) -> Callable[..., float]:
    """The whole model's held-out error in its current state: per row the relative output error
    against FP, weighted by ``b_k^2`` of its step (how far it moves the sampler), averaged.
    ``judge(steps)`` sums over the rows of ``steps`` only: enough to compare two step->group tables
    that differ there, at a fraction of the cost (the other rows give the same error under both)."""
    with quantization_disabled(unet):
        fp = forward_rows(unet, held, batch, device).double()
    weights = sensitivity.double().pow(2)[held.step]
    weights = weights / weights.mean()

    def judge(steps: torch.Tensor | None = None) -> float:
        rows = torch.ones(len(held), dtype=torch.bool) if steps is None else torch.isin(held.step, steps.cpu())
        out = forward_rows(unet, held.subset(rows), batch, device).double()
        return float((relative_error(out, fp[rows]) * weights[rows]).sum()) / len(held)

    return judge


def _reconstruct(
    unet: nn.Module,
    data: CalibrationSet,
    steps: list[int],
    cfg: ReconConfig,
    search_groups: bool,
    device: torch.device,
    out_dir: str | Path | None,
    resume: bool,
    progress: bool,
    key: str,
    sensitivity: torch.Tensor,
    samples: SampleJudge | None,
) -> tuple[list[dict], dict | None]:
    rows, held = heldout_trajectories(data, steps, cfg.holdout, cfg.seed + SPLIT_STREAM)
    units = execution_order(unet, find_units(unet), rows, device)
    judge = None  # the whole model's one-step error at some steps: it decides step->group table changes
    if held is not None and search_groups:
        judge = _model_judge(unet, rows.subset(held), sensitivity, cfg.capture_batch, device)
    if cfg.learn_rounding:  # every layer has its rounding variables (the resume state's keys), at round to nearest
        for _, layer in quant_layers(unet):
            layer.weight_quant.set_nearest(layer.weight_to_quantize())
    check = SamplerCheck(samples, choose=cfg.start == "best") if samples is not None else None
    if check is not None:
        check.begin(unet)  # the start: the recipe's or min-max activation ranges, on the sampler's output
    ckpt = ResumeCheckpoints(Path(out_dir) / ".resume", key) if out_dir is not None else None
    first, losses = ckpt.load(unet) if (ckpt and resume) else (0, [])

    def done(i: int, loss: UnitLoss) -> None:
        losses.append(dataclasses.asdict(loss))
        if ckpt is not None:
            ckpt.save(unet, i + 1, losses)

    reconstruct(unet, units, rows, cfg, device, start_unit=first, on_unit_done=done, progress=progress, held_rows=held,
                search_groups=search_groups, judge=judge, step_weights=sensitivity.pow(2))  # fmt: skip
    if ckpt is not None:
        ckpt.clear()
    outcome = check.end(unet) if check is not None else None  # the result is kept only if it beats the start
    return losses, outcome
