"""Where does a quantized model's error come from? Per-layer, per-step sensitivity (forward passes only).

The FP sampler's trajectories are recorded once (data-free, seeded), and every recorded input is
then evaluated with one unit's quantizers on and everything else in full precision (teacher
forcing: all runs see exactly the FP trajectory's inputs):

    1. quantize a copy of the UNet with the preset (state FP) and record FP trajectories with it
    2. FP outputs on every row (the reference); observe activations on every row, init all ranges
    3. per unit: only its weights quantized, then only its input activations (attention blocks:
       their Q, K, V and softmax quantizers together); relative output error per step
    4. everything quantized, for reference; per-step activation ranges from the statistics

Ranges are initialised as the preset does (Lp search, one group unless the config says more) on
all recorded steps: this is round-to-nearest quantization, the starting point of every method.

Example::

    report = analyze(load_model("embedded:mnist"), "w6a6", AnalyzeConfig(num_samples=8, steps=20))
    print(worst_table(report))
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..calib.data import CalibrationSet, record_trajectories
from ..config import QuantConfig
from ..context import step_context
from ..models.loading import DiffusionModel
from ..quantize import act_quantizers, calibrate, quantize_model, set_state
from ..sampling import SamplerConfig, eps_sensitivity
from ..state import QuantState
from ..utils.resources import machine_description, provenance, resolve_device
from . import metrics
from .cost import row_macs
from .report import ActRange, LayerSensitivity, SensitivityReport, StepErrors
from .units import Unit, execution_order, find_units

logger = logging.getLogger(__name__)


@dataclass
class AnalyzeConfig:
    """Settings of :func:`analyze`.

    Args:
        num_samples: FP trajectories recorded (default 8); every one contributes all K steps.
        steps: sampling steps K of the DDIM schedule (default 20).
        guidance: classifier-free guidance scale (default ``None``: the model's default guidance).
        seed: seed of the trajectories' noise (default 1; 0 is the evaluation seed).
        batch_size: rows per forward pass (default 64).
        device: torch device (default cuda when available, else cpu).
        layers: fnmatch patterns of the units to analyse (default all).
        percentile: high percentile of the activation ranges (default 99.9; the low one is 100 - it).
        prompts: prompts of a text-conditioned model (repeated over the trajectories).
        progress: show progress bars.
    """

    num_samples: int = 8
    steps: int = 20
    guidance: float | None = None
    seed: int = 1
    batch_size: int = 64
    device: str | None = None
    layers: tuple[str, ...] = ("*",)
    percentile: float = 99.9
    prompts: tuple[str, ...] | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.layers = tuple(self.layers)
        self.prompts = None if self.prompts is None else tuple(self.prompts)
        for name in ("num_samples", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"AnalyzeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.guidance is not None and not self.guidance >= 0:
            raise ValueError(f"AnalyzeConfig.guidance must be >= 0, got {self.guidance}")
        if self.seed < 0:
            raise ValueError(f"AnalyzeConfig.seed must be >= 0, got {self.seed}")
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"AnalyzeConfig.percentile must be in (50, 100], got {self.percentile}")
        if not self.layers or not all(isinstance(p, str) for p in self.layers):
            raise ValueError("AnalyzeConfig.layers must be a non-empty sequence of fnmatch patterns")


class ErrorProbe:
    """Runs a quantized model on recorded rows and measures its output error against full precision.

    Args:
        model: a quantized model whose quantizers are all in state FP (ranges initialised for
            :meth:`errors`).
        calib: the recorded rows (the FP trajectories' inputs).
        guidance: the guidance scale that combines the two branches' outputs.
        sensitivity: (K,) ``b_k`` of the sampler.
        batch_size: rows per forward pass.
        device: where the model runs.
    """

    def __init__(self, model: nn.Module, calib: CalibrationSet, guidance: float, sensitivity: torch.Tensor,
                 batch_size: int, device: torch.device) -> None:  # fmt: skip
        self.model, self.calib, self.guidance = model, calib, guidance
        self.sensitivity, self.batch_size, self.device = sensitivity, batch_size, device
        self.reference, self.steps = self._eps(self.outputs())

    @torch.no_grad()
    def outputs(self) -> torch.Tensor:
        """(M, C, H, W) denoiser outputs on every row, in the model's current state."""
        outs = []
        for rows in self.calib.batches(self.batch_size):
            x, t, step, cond = self.calib.model_inputs(rows, self.device)
            with step_context(step.to(self.device)):
                outs.append(self.model(x, t, **cond).sample.float().cpu())
        return torch.cat(outs)

    def _eps(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.calib
        return metrics.guided(out, c.sample, c.step, c.branch, self.guidance, c.num_steps)

    def errors(self, modules: Sequence[nn.Module]) -> StepErrors:
        """Output errors per step with ``modules`` (and nothing else) in state CALIBRATED."""
        for m in modules:
            m.state = QuantState.CALIBRATED
        try:
            eps, _ = self._eps(self.outputs())
        finally:
            for m in modules:
                m.state = QuantState.FP
        per_step = metrics.step_means(metrics.relative_error(eps, self.reference), self.steps, self.calib.num_steps)
        score = metrics.weighted_score(per_step, self.sensitivity)
        return StepErrors(per_step.tolist(), score, float(per_step.mean()))


def analyze(model: DiffusionModel, preset: str | QuantConfig, cfg: AnalyzeConfig | None = None) -> SensitivityReport:
    """Per-layer and per-step sensitivity of ``model`` to the quantization ``preset``; ``model`` is not modified.

    Args:
        model: the FP model (:func:`adpdm.models.loading.load_model`).
        preset: a preset name (``"w6a6"``) or a config whose ``num_steps`` equals ``cfg.steps``.
        cfg: settings (default :class:`AnalyzeConfig`).

    Example::

        report = analyze(load_model("embedded:mnist"), "w6a6")
        report.save("analysis.json")
    """
    cfg = cfg or AnalyzeConfig()
    start = time.perf_counter()
    qcfg = _quant_config(preset, cfg.steps)
    device = resolve_device(cfg.device)
    guidance = model.default_guidance if cfg.guidance is None else cfg.guidance
    sampler = SamplerConfig(num_steps=cfg.steps, guidance_scale=guidance, seed=cfg.seed, batch_size=cfg.batch_size)
    qunet = quantize_model(copy.deepcopy(model.unet), qcfg).to(device).eval()  # state FP: the FP model
    units = _selected(find_units(qunet), cfg.layers)
    calib = _record(model, qunet, sampler, cfg, device)
    sensitivity = eps_sensitivity(model.scheduler_config, sampler)
    units = execution_order(qunet, units, calib, device)
    probe = ErrorProbe(qunet, calib, guidance, sensitivity, cfg.batch_size, device)
    with torch.no_grad(), calibrate(qunet):  # observe every row, then init the ranges
        probe.outputs()
    set_state(qunet, QuantState.FP)
    macs = row_macs(qunet, calib, device)
    layers = []
    for unit in tqdm(units, desc="layers", disable=not cfg.progress):
        weight = probe.errors(unit.weight) if unit.weight else None
        act = probe.errors(unit.act) if unit.act else None
        layers.append(LayerSensitivity(unit.name, unit.kind, unit.params, unit.wbits, unit.abits, unit.quantizers,
                                       weight, act, macs.get(unit.name, 0)))  # fmt: skip
    everything = [m for m in qunet.modules() if isinstance(getattr(m, "state", None), QuantState)]
    all_layers = probe.errors(everything)
    logger.info("all layers quantized: relative error %.4g (trajectory-weighted)", all_layers.score)
    return SensitivityReport(
        model=model.spec,
        preset=preset if isinstance(preset, str) else "custom",
        quant_config=qcfg.to_dict(),
        settings=_jsonable({**asdict(cfg), "guidance": guidance, "device": str(device), "rows": len(calib)}),
        timesteps=[int(calib.timestep[calib.step == k][0]) for k in range(cfg.steps)],
        sensitivity=sensitivity.tolist(),
        layers=layers,
        all_layers=all_layers,
        ranges=_ranges(qunet, units, cfg.percentile),
        machine=machine_description(),
        seconds=time.perf_counter() - start,
        code=provenance(),
    )


def _jsonable(settings: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def _quant_config(preset: str | QuantConfig, steps: int) -> QuantConfig:
    if isinstance(preset, str):
        return QuantConfig.preset(preset, num_steps=steps)
    if preset.num_steps != steps:
        raise ValueError(f"the QuantConfig has num_steps={preset.num_steps} but the analysis runs {steps} steps: "
                         "make them equal")  # fmt: skip
    return preset


def _selected(units: list[Unit], patterns: tuple[str, ...]) -> list[Unit]:
    picked = [u for u in units if any(fnmatch.fnmatchcase(u.name, p) for p in patterns)]
    if not picked:
        raise ValueError(f"no quantized layer matches {list(patterns)}; names look like {units[0].name!r}")
    return picked


def _record(
    model: DiffusionModel, qunet: nn.Module, sampler: SamplerConfig, cfg: AnalyzeConfig, device: torch.device
) -> CalibrationSet:
    """The FP trajectories' denoiser inputs (the quantized copy in state FP computes in full precision)."""
    if model.kind != "text":
        if cfg.prompts is not None:
            raise ValueError(f"prompts are for text-conditioned models; {model.spec} is {model.kind}")
        return record_trajectories(qunet, model.scheduler_config, cfg.num_samples, sampler, model.num_classes,
                                   model.null_class, progress=cfg.progress)  # fmt: skip
    if not cfg.prompts:
        raise ValueError(f"{model.spec} is text-conditioned: pass prompts (`--prompts FILE`, one per line)")
    from diffusers import DDIMScheduler

    from ..pipelines import record_pipeline

    # the same components around the quantized copy, on the DDIM schedule `adpdm sample` uses
    scheduler = DDIMScheduler.from_config(model.scheduler_config)
    slot = "unet" if "unet" in model.pipeline.components else "transformer"  # PixArt's denoiser
    pipe = type(model.pipeline)(**{**model.pipeline.components, slot: qunet, "scheduler": scheduler}).to(device)
    prompts = [cfg.prompts[i % len(cfg.prompts)] for i in range(cfg.num_samples)]
    return record_pipeline(pipe, cfg.steps, prompts=prompts, guidance_scale=sampler.guidance_scale,
                           batch_size=cfg.batch_size, seed=cfg.seed)  # fmt: skip


def _ranges(model: nn.Module, units: list[Unit], percentile: float) -> list[ActRange]:
    """Per-step ranges of the analysed units' activation quantizers."""
    owner = {q: u.name for u in units for q in u.quantizers}
    out = []
    for name, q in act_quantizers(model):
        if name in owner:
            r = metrics.step_ranges(q.stats, percentile)
            lists = {k: v.tolist() for k, v in r.items()}
            out.append(ActRange(name, owner[name], **lists, variation=metrics.range_variation(r["low"], r["high"])))
    return out
