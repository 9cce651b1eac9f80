"""The one comparison harness: methods side by side on the same model, noise and machine.

``adpdm demo``, ``adpdm bench`` (and its draw study and diagnosis modes) all compare methods
with :func:`compare_methods`, under the same rules:

1. the FP model is sampled once on the evaluation noise (``eval_seed``, 0 by default), which no
   calibration ever sees: calibration draw ``d`` records its trajectories from noise seed ``d``;
2. every (draw, preset, method) calibrates a fresh copy of the FP UNet with the same budget,
   samples the same evaluation noise, and is scored against the FP samples (PSNR per sample,
   FID against FP) and against the data reference;
3. conditional models use the same guidance for calibration and evaluation (``guidance``,
   default the model's: 2.0 with a null class, 7.5 for text); text-conditioned pipelines are
   calibrated on their own calls and sampled through the pipeline, both on ``prompts``
   (repeated over the trajectories and samples);
4. optionally (``diagnose``) the teacher-forced output error of every sampling step, on FP
   trajectories of the evaluation noise, and its sampler-weighted sum.

Each finished run is handed to ``on_row`` at once, so a caller can save it before the next.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import TENSORS, save_quantized
from .config import QuantConfig
from .eval.evaluate import Evaluator, ModelSamples, evaluate_against_fp, sample_models
from .eval.metrics import background_haze, background_speckle, fid_from_features, psnr
from .generate import Conditioning, check_conditioning
from .methods import get_method
from .models.loading import DiffusionModel
from .ptq import CalibConfig, run_ptq
from .recon.reconstruct import ReconConfig
from .sampling import SamplerConfig, eps_sensitivity

logger = logging.getLogger(__name__)

# the FP floor of FID: FP samples of the evaluation noise against FP samples of this other seed
FLOOR_SEED_OFFSET = 10_000


@dataclass
class CompareConfig:
    """What to compare, and how.

    Args:
        methods: registry names.
        presets: bit-width presets.
        draws: calibration draws, i.e. the noise seeds of the calibration trajectories.
        eval_seed: the evaluation noise seed (held out: never a draw).
        num_samples: samples per model for the metrics.
        steps: sampling steps K (calibration and evaluation).
        groups: G for the grouped methods (``None``: the method's default).
        calib: calibration settings (its sampler is replaced by one with ``steps``, the draw's seed
            and the guidance).
        recon: reconstruction settings (the same budget for every method).
        guidance: guidance scale (``None``: the model's default).
        diagnose: also the teacher-forced per-step output error of every run.
        diagnose_samples: FP trajectories of the evaluation noise used by ``diagnose``.
        fp_floor: FID of the FP model against itself on independent noise (the floor of ``fid_fp``).
        layer_bits: ``QuantConfig.layer_bits`` of every run (mixed precision for every method alike;
            the rows state their effective bits).
        smoothing: ``QuantConfig.smoothing`` of every run (for every method alike; rows ``PRESET-smooth``).
        prompts: the prompts of a text-conditioned pipeline (calibration and evaluation alike).
    """

    methods: tuple[str, ...] = ("rtn", "adpdm")
    presets: tuple[str, ...] = ("w8a8",)
    draws: tuple[int, ...] = (1,)
    eval_seed: int = 0
    num_samples: int = 128
    steps: int = 20
    groups: int | None = 4
    calib: CalibConfig = field(default_factory=lambda: CalibConfig(num_samples=16, calib_steps=6, signature_samples=4))
    recon: ReconConfig = field(default_factory=lambda: ReconConfig(iters=50))
    guidance: float | None = None
    diagnose: bool = False
    diagnose_samples: int = 16
    fp_floor: bool = False
    layer_bits: tuple[tuple[str, int, int], ...] = ()
    smoothing: bool = False
    prompts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.methods, self.presets, self.draws = tuple(self.methods), tuple(self.presets), tuple(self.draws)
        self.prompts = tuple(self.prompts)
        if not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise ValueError("prompts must be non-empty strings")
        for m in self.methods:
            get_method(m)
        for p in self.presets:
            self.layer_bits = QuantConfig.preset(p, layer_bits=self.layer_bits).layer_bits
        if not self.draws or len(set(self.draws)) != len(self.draws) or min(self.draws) < 0:
            raise ValueError(f"draws must be distinct non-negative seeds, got {self.draws}")
        if self.eval_seed in self.draws:
            raise ValueError(f"the evaluation seed {self.eval_seed} must be held out of the calibration draws")
        if self.num_samples < 2 or self.steps < 1:
            raise ValueError(f"need num_samples >= 2 and steps >= 1, got {self.num_samples}, {self.steps}")


@dataclass
class Run:
    """One calibrated model, scored: its row, its calibration report and its samples."""

    row: dict[str, Any]
    report: dict[str, Any] | None
    images: torch.Tensor


def compare_methods(
    model: DiffusionModel,
    cfg: CompareConfig,
    evaluator: Evaluator,
    on_run: Callable[[Run], None],
    skip: Callable[[str, str, int], bool] = lambda method, preset, draw: False,
    fp_row: bool = True,
) -> Run:
    """Run every (draw, preset, method) of ``cfg`` on ``model``; returns the FP run.

    Args:
        model: the FP model (not modified).
        cfg: the comparison.
        evaluator: metrics (reference, Inception, classifier), shared by every run.
        on_run: called with every finished :class:`Run`, the FP one first (save it there).
        skip: ``skip(method, preset, draw)`` leaves a run out (e.g. already in a resumed file).
        fp_row: score the FP samples too (their run, method ``fp32``, goes to ``on_run``).
    """
    guidance = cfg.guidance if cfg.guidance is not None else model.default_guidance
    sampler = SamplerConfig(num_steps=cfg.steps, seed=cfg.eval_seed, guidance_scale=guidance)
    check_conditioning(model, Conditioning(prompts=list(cfg.prompts) or None), sampler)
    if cfg.diagnose and model.kind == "text":
        raise ValueError(f"{model.spec}: the per-step diagnosis covers unconditional and class-conditional models")
    fp = sample_models({"fp32": model.unet}, model, cfg.num_samples, sampler, _conditioning(model, cfg))["fp32"]
    fp_run = Run(_fp_row(model, cfg, evaluator, fp, sampler) if fp_row else {}, None, fp.images)
    if fp_row:
        on_run(fp_run)
    held_out = _held_out(model, cfg, sampler) if cfg.diagnose else None
    for draw in cfg.draws:
        for preset in cfg.presets:
            for method in cfg.methods:
                if not skip(method, preset, draw):
                    on_run(_run(model, cfg, evaluator, fp, sampler, method, preset, draw, held_out))
    return fp_run


def _conditioning(model: DiffusionModel, cfg: CompareConfig) -> Conditioning | None:
    """The prompts of a text model (``None`` otherwise: class models sample their default labels)."""
    return Conditioning(prompts=list(cfg.prompts)) if model.kind == "text" else None


def _calibrate(model: DiffusionModel, cfg: CompareConfig, method: str, qcfg: QuantConfig, calib: CalibConfig) -> Any:
    """``run_ptq`` on a fresh copy of the FP denoiser; a text pipeline's calibration rows are recorded from
    the pipeline's own calls (DDIM, the draw's noise, the prompts repeated over the trajectories)."""
    data = None
    if model.kind == "text":
        from .pipelines import record_pipeline_calls

        prompts = [cfg.prompts[i % len(cfg.prompts)] for i in range(calib.num_samples)]
        data = record_pipeline_calls(model, calib.sampler, prompts)
    return run_ptq(copy.deepcopy(model.unet), model.scheduler_config, method, qcfg, calib, cfg.recon,
                   num_classes=model.num_classes, null_class=model.null_class, data=data,
                   progress=False)  # fmt: skip


def _run(model, cfg, evaluator, fp, sampler, method, preset, draw, held_out) -> Run:  # noqa: ANN001
    groups = cfg.groups if get_method(method).takes_groups else None
    qcfg = QuantConfig.preset(preset, num_steps=cfg.steps, groups=groups, layer_bits=cfg.layer_bits,
                              smoothing=cfg.smoothing)  # fmt: skip
    calib = dataclasses.replace(cfg.calib, sampler=dataclasses.replace(sampler, seed=draw))
    logger.info("compare: %s %s %s, calibration draw %d", model.spec, method, preset, draw)
    start = time.perf_counter()
    ptq = _calibrate(model, cfg, method, qcfg, calib)
    q = sample_models({method: ptq.model}, model, cfg.num_samples, sampler, _conditioning(model, cfg), progress=False)
    res = evaluate_against_fp(evaluator, {"fp32": fp, **q}, "fp32", model.kind == "class")[method]
    row = make_row(
        model.spec,
        method,
        qcfg,
        ptq.report,
        res,
        _ckpt_bytes(ptq.model),
        row_preset(preset, cfg.layer_bits, cfg.smoothing),
    )
    images = q[method].images
    row.update(draw=draw, eval_seed=cfg.eval_seed, psnr_se=_psnr_se(images, fp.images),
               haze=background_haze(images, fp.images), speckle=background_speckle(images, fp.images))  # fmt: skip
    if held_out is not None:
        row.update(_step_errors(ptq.model, *held_out))
    row["row_seconds"] = time.perf_counter() - start  # calibration, sampling and metrics
    logger.info("compare: %s %s draw %d: PSNR %.2f dB, FID vs FP %s", method, preset, draw, row["psnr"],
                row["fid_fp"])  # fmt: skip
    return Run(row, ptq.report, images)


def _fp_row(model: DiffusionModel, cfg: CompareConfig, evaluator: Evaluator, fp: ModelSamples, sampler) -> dict:  # noqa: ANN001
    res = evaluate_against_fp(evaluator, {"fp32": fp}, "fp32", model.kind == "class")["fp32"]
    row = make_row(model.spec, "fp32", None, None, res, _fp_bytes(model.unet))
    row.update(draw=None, eval_seed=cfg.eval_seed, haze=background_haze(fp.images, fp.images),
               speckle=background_speckle(fp.images, fp.images))  # fmt: skip
    if cfg.fp_floor:
        other = dataclasses.replace(sampler, seed=cfg.eval_seed + FLOOR_SEED_OFFSET)
        fp2 = sample_models({"fp32": model.unet}, model, cfg.num_samples, other, _conditioning(model, cfg),
                            progress=False)["fp32"]  # fmt: skip
        stats = evaluator.fp_inception_stats(fp.images)
        if stats is not None:
            row["fid_fp_floor"] = fid_from_features(stats, evaluator.inception_stats(fp2.images))
        row["psnr_fp_floor"] = float(psnr(fp2.images, fp.images).clamp_max(100).mean())
    return row


def _psnr_se(images: torch.Tensor, fp: torch.Tensor) -> float:
    """Standard error of the mean per-sample PSNR (values capped at 100 dB as in the mean)."""
    v = psnr(images, fp).clamp_max(100.0).double()
    return float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0


def _held_out(model: DiffusionModel, cfg: CompareConfig, sampler: SamplerConfig) -> tuple:
    """FP trajectories of the evaluation noise, the FP outputs on them and the sampler's sensitivity."""
    from .calib.data import record_trajectories

    data = record_trajectories(model.unet, model.scheduler_config, cfg.diagnose_samples, sampler,
                               model.num_classes, model.null_class, progress=False)  # fmt: skip
    return data, _denoise(model.unet, data), eps_sensitivity(model.scheduler_config, sampler)


@torch.no_grad()
def _denoise(unet: torch.nn.Module, data: Any) -> torch.Tensor:
    """The denoiser's output on every recorded FP input (teacher forcing: no error accumulates)."""
    from .context import step_context

    device = next(unet.parameters()).device
    outs = []
    for rows in data.batches(64):
        x, t, step, cond = data.model_inputs(rows, device)
        with step_context(step.to(device)):
            outs.append(unet(x, t, **cond).sample.float().cpu())
    return torch.cat(outs)


def _step_errors(unet: torch.nn.Module, data: Any, ref: torch.Tensor, sens: torch.Tensor) -> dict[str, Any]:
    """Relative squared output error ||q - fp||^2 / ||fp||^2 of every step, and ``sum_k b_k^2 e_k``."""
    out = _denoise(unet, data)
    k = data.num_steps
    num = torch.zeros(k).index_add_(0, data.step, (out - ref).flatten(1).pow(2).sum(1))
    den = torch.zeros(k).index_add_(0, data.step, ref.flatten(1).pow(2).sum(1))
    err = num / den.clamp_min(1e-12)
    return {"step_error": err.tolist(), "trajectory_error": float((err.double() * sens.double().pow(2)).sum())}


def row_preset(preset: str, layer_bits: tuple = (), smoothing: bool = False) -> str:
    """A row's preset: ``w6a6-mixed`` when layer bits mix precisions, so it never passes for the uniform preset,
    and ``-smooth`` with smoothing (``w6a6-smooth``, ``w6a6-mixed-smooth``)."""
    return f"{preset}{'-mixed' if layer_bits else ''}{'-smooth' if smoothing else ''}"


def make_row(
    spec: str, method: str, qcfg: QuantConfig | None, report: dict | None, res: Any, ckpt: int,
    preset: str | None = None,
) -> dict:  # fmt: skip
    """The fields every comparison row has (the ``fp32`` row has no config or report)."""
    if preset is None:
        preset = "fp32" if qcfg is None else f"w{qcfg.wbits}a{qcfg.abits}"
    return {
        "model": spec, "method": method, "preset": preset,
        "protocol": None if qcfg is None else qcfg.protocol,
        "wbits": 32 if qcfg is None else qcfg.wbits, "abits": 32 if qcfg is None else qcfg.abits,
        "groups": None if report is None else report["quant_config"]["groups"],
        "timesteps": None if report is None else report["calibration"]["strategy"],
        "num_samples": res.num_samples, "fid_data": res.fid_data, "fid_fp": res.fid_fp, "psnr": res.psnr,
        "accuracy": res.accuracy, "calib_seconds": None if report is None else report["calib_seconds"],
        "peak_mem_mb": None if report is None else report["peak_mem_mb"], "ckpt_bytes": ckpt,
        "clf_fid_data": res.clf_fid_data, "clf_fid_fp": res.clf_fid_fp,
        "selected_steps": None if report is None else report.get("selected_steps"),
        **_cost_fields(None if report is None else report.get("cost")),
    }  # fmt: skip


def _cost_fields(cost: dict | None) -> dict[str, Any]:
    """Effective bits (averaged over the multiply-accumulates) and giga-bit-operations per denoiser call;
    the fp32 row counts 32 bits (reports of older versions have no cost: None)."""
    if cost is None:
        return {"wbits_eff": None, "abits_eff": None, "gbops": None}
    return {"wbits_eff": cost["wbits"], "abits_eff": cost["abits"], "gbops": cost["bops"] / 1e9}


def _ckpt_bytes(model: torch.nn.Module) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        save_quantized(model, tmp)
        return (Path(tmp) / TENSORS).stat().st_size


def _fp_bytes(unet: torch.nn.Module) -> int:
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, Path(tmp) / "fp.safetensors")
        return (Path(tmp) / "fp.safetensors").stat().st_size
