"""Quantize the UNet of a diffusers pipeline in place and keep using the pipeline.

The pipeline's own loop calls the UNet; :class:`StepTracker` (a forward pre-hook and hook on
the UNet, diffusers-independent) turns each call's timestep into the step index ``k`` of the
scheduler's current schedule and sets :func:`adpdm.step_context` around the call. This works
for pipelines with and without step callbacks (``DDPMPipeline`` and ``DDIMPipeline`` have
none) and never patches the pipeline. Under classifier-free guidance both branches go through
one batched UNet call with one timestep, so they get the same step, as they should.

Calibration data come from the pipeline itself: :func:`record_pipeline` runs it on seeded
noise (and prompts) and records every UNet input, keyed like :func:`adpdm.calib.data.record_trajectories`.

Example::

    pipe = DDIMPipeline.from_pretrained("google/ddpm-cifar10-32")
    result = adpdm.quantize_pipeline(pipe, adpdm.QuantConfig.preset("w4a8", num_steps=100))
    images = pipe(batch_size=4, num_inference_steps=100).images
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .calib.data import CalibrationSet
from .config import QuantConfig
from .context import current_step, step_context
from .models.unet import TEXT_DENOISERS, is_transformer, unet_of
from .ptq import CalibConfig, PTQResult, run_ptq
from .recon.reconstruct import ReconConfig

logger = logging.getLogger(__name__)

TRACKER_ATTR = "adpdm_step_tracker"


class StepTracker:
    """Sets the step context of every UNet call from its timestep and the scheduler's schedule.

    A call made inside an explicit :func:`adpdm.step_context` keeps that context.

    Args:
        unet: the pipeline's UNet (quantized or not).
        scheduler: the pipeline's scheduler; its ``timesteps`` (set by the pipeline at the start
            of each run) define step ``k`` as the position of the call's timestep.
    """

    def __init__(self, unet: nn.Module, scheduler: Any) -> None:
        self.unet, self.scheduler = unet, scheduler
        self._open: list[Any] = []
        self.last_step: int | None = None
        self._handles = [
            unet.register_forward_pre_hook(self._enter, with_kwargs=True),
            unet.register_forward_hook(self._exit, always_call=True),
        ]

    def step_of(self, timestep: torch.Tensor | float | int) -> int:
        """Index of ``timestep`` in ``scheduler.timesteps``; a clear error when it is not there."""
        t = torch.as_tensor(timestep).flatten()
        if t.numel() == 0:
            raise ValueError("the UNet was called without a timestep")
        if t.numel() > 1 and not bool((t == t[0]).all()):
            raise ValueError("one UNet call mixes timesteps; the step context needs one timestep per call")
        schedule = getattr(self.scheduler, "timesteps", None)
        if schedule is None or len(schedule) == 0:
            raise RuntimeError("the scheduler has no timesteps yet; call it from the pipeline")
        hits = (torch.as_tensor(schedule).to(t.device).float() == t[0].float()).nonzero().flatten()
        if hits.numel() == 0:
            raise ValueError(f"timestep {float(t[0])} is not in the scheduler's current schedule")
        return int(hits[0])

    def _enter(self, _module: nn.Module, args: tuple, kwargs: dict) -> None:
        if current_step() is not None:  # an explicit step context (calibration, our sampler) wins
            self._open.append(None)
            return
        timestep = kwargs["timestep"] if "timestep" in kwargs else args[1]
        self.last_step = self.step_of(timestep)
        ctx = step_context(self.last_step)
        ctx.__enter__()
        self._open.append(ctx)

    def _exit(self, *_: Any) -> None:
        ctx = self._open.pop() if self._open else None
        if ctx is not None:
            ctx.__exit__(None, None, None)

    def remove(self) -> None:
        """Detach the hooks."""
        for h in self._handles:
            h.remove()


def track_steps(pipe: Any) -> StepTracker:
    """Install (or return the installed) :class:`StepTracker` on ``pipe.unet``."""
    unet = _unet_of(pipe)
    tracker = getattr(pipe, TRACKER_ATTR, None)
    if tracker is not None and tracker.unet is unet and tracker.scheduler is pipe.scheduler:
        return tracker
    if tracker is not None:
        tracker.remove()
    tracker = StepTracker(unet, pipe.scheduler)
    setattr(pipe, TRACKER_ATTR, tracker)
    return tracker


def _unet_of(pipe: Any) -> nn.Module:
    return unet_of(pipe)


class _PipelineRecorder:
    """UNet forward pre-hook that records every call's inputs with the tracker's step."""

    def __init__(self, tracker: StepTracker, guided: bool) -> None:
        self.tracker, self.guided = tracker, guided
        self.rows: dict[str, list[torch.Tensor]] = {}
        self.offset = 0  # index of the first trajectory of the current pipeline call

    def _add(self, key: str, value: torch.Tensor) -> None:
        self.rows.setdefault(key, []).append(value.detach().float().cpu().clone() if key == "x" else value)

    def __call__(self, _module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = kwargs["sample"] if "sample" in kwargs else args[0]
        t = kwargs["timestep"] if "timestep" in kwargs else args[1]
        b = x.shape[0]
        n = b // 2 if self.guided else b
        k = self.tracker.step_of(t)
        idx = torch.arange(n) + self.offset
        self._add("x", x)
        self._add("timestep", torch.full((b,), int(torch.as_tensor(t).flatten()[0])))
        self._add("step", torch.full((b,), k))
        # diffusers batches guidance as [unconditional, conditional]
        self._add("sample", idx.repeat(2) if self.guided else idx)
        self._add("branch", (1 - torch.arange(b) // n) if self.guided else torch.zeros(b, dtype=torch.long))
        for name in ("encoder_hidden_states", "encoder_attention_mask", "class_labels"):
            value = kwargs.get(name)
            if value is None and name == "encoder_hidden_states" and len(args) > 2:
                value = args[2]
            if isinstance(value, torch.Tensor):
                self._add(f"cond.{name}", value.detach().cpu().clone())

    def result(self, num_steps: int) -> CalibrationSet:
        cat = {k: torch.cat(v) for k, v in self.rows.items()}
        cond = {k[5:]: v for k, v in cat.items() if k.startswith("cond.")}
        main = {k: v for k, v in cat.items() if not k.startswith("cond.")}
        return CalibrationSet(**main, cond=cond, num_steps=num_steps)


def _call_kwargs(pipe: Any, batch: int, steps: int, seed: int, prompts: list[str] | None, guidance: float) -> dict:
    params = inspect.signature(pipe.__call__).parameters
    kwargs: dict[str, Any] = {"num_inference_steps": steps, "generator": torch.Generator().manual_seed(seed)}
    if "use_resolution_binning" in params:  # PixArt: sample at the latents' own size
        kwargs["use_resolution_binning"] = False
    if "output_type" in params:
        kwargs["output_type"] = "pt" if "prompt" not in params else "latent"
    if prompts is not None:
        if "prompt" not in params:
            raise ValueError(f"{type(pipe).__name__} takes no prompts")
        kwargs["prompt"] = prompts
        if "guidance_scale" in params:
            kwargs["guidance_scale"] = guidance
    elif "prompt" in params:
        raise ValueError(f"{type(pipe).__name__} is text-conditioned: pass prompts")
    else:
        kwargs["batch_size"] = batch
    return kwargs


@torch.no_grad()
def record_pipeline(
    pipe: Any,
    num_steps: int,
    num_samples: int = 32,
    prompts: Sequence[str] | None = None,
    guidance_scale: float = 7.5,
    batch_size: int = 16,
    seed: int = 0,
) -> CalibrationSet:
    """Run ``pipe`` on seeded noise (and ``prompts``) and record every UNet input.

    Args:
        pipe: a diffusers pipeline with a ``unet`` and a ``scheduler``.
        num_steps: inference steps K (must match the quantization config).
        num_samples: trajectories for unconditional pipelines; with prompts, one per prompt.
        prompts: text prompts of a text-conditioned pipeline (both guidance branches are recorded).
        guidance_scale: classifier-free guidance scale passed to a text-conditioned pipeline.
        batch_size: trajectories per pipeline call.
        seed: seed of the first call (call ``i`` uses ``seed + i``).
    """
    if prompts is not None:
        prompts = [str(p) for p in prompts]
        if not prompts or not all(p.strip() for p in prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings")
        num_samples = len(prompts)
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}")
    tracker = track_steps(pipe)
    guided = prompts is not None and guidance_scale > 1.0
    recorder = _PipelineRecorder(tracker, guided)
    handle = _unet_of(pipe).register_forward_pre_hook(recorder, with_kwargs=True)
    try:
        for i, start in enumerate(range(0, num_samples, batch_size)):
            n = min(batch_size, num_samples - start)
            chunk = prompts[start : start + n] if prompts is not None else None
            recorder.offset = start
            pipe(**_call_kwargs(pipe, n, num_steps, seed + i, chunk, guidance_scale))
    finally:
        handle.remove()
    calib = recorder.result(num_steps)
    logger.info("recorded %d UNet inputs from %s (%d trajectories x %d steps)", len(calib), type(pipe).__name__,
                num_samples, num_steps)  # fmt: skip
    return calib


def record_pipeline_calls(model: Any, sampler: Any, prompts: Sequence[str]) -> CalibrationSet:
    """Calibration rows of a text-conditioned :class:`adpdm.models.loading.DiffusionModel`, recorded from its
    pipeline on the sampler ``adpdm sample`` uses (``sampler.num_steps``, seed and guidance), one trajectory per
    prompt; the pipeline's own scheduler and the FP denoiser come back untouched (no step tracker left on it)."""
    from .sampling import make_scheduler

    pipe = model.pipeline
    saved = pipe.scheduler
    pipe.scheduler = make_scheduler(model.scheduler_config, sampler)
    try:
        return record_pipeline(pipe, sampler.num_steps, len(prompts), prompts, sampler.guidance_scale,
                               batch_size=sampler.batch_size, seed=sampler.seed)  # fmt: skip
    finally:
        tracker = getattr(pipe, TRACKER_ATTR, None)
        if tracker is not None:
            tracker.remove()
            delattr(pipe, TRACKER_ATTR)
        pipe.scheduler = saved


def quantize_pipeline(
    pipe: Any,
    cfg: QuantConfig,
    method: str = "adpdm",
    prompts: Sequence[str] | None = None,
    calib: CalibConfig | None = None,
    recon: ReconConfig | None = None,
    guidance_scale: float = 7.5,
    out_dir: str | None = None,
    progress: bool = True,
) -> PTQResult:
    """Quantize ``pipe.unet`` in place with ``method``; the pipeline then samples with it.

    The calibration data are recorded from the pipeline itself (``cfg.num_steps`` inference
    steps, ``calib.num_samples`` trajectories or one per prompt). A :class:`StepTracker` stays
    installed so that later pipeline calls set the step context; sample with the same number
    of inference steps as ``cfg.num_steps``.
    """
    unet = _unet_of(pipe)
    if is_transformer(unet) and type(unet).__name__ not in TEXT_DENOISERS:
        raise ValueError(f"{type(pipe).__name__}: quantize_pipeline records a UNet pipeline's own calls; quantize "
                         "a DiT with run_ptq on load_model(folder).unet, as `adpdm quantize --model FOLDER` "
                         "does")  # fmt: skip
    calib = calib or CalibConfig(calib_steps=min(10, cfg.num_steps))
    calib = dataclasses.replace(calib, sampler=dataclasses.replace(calib.sampler, num_steps=cfg.num_steps))
    data = record_pipeline(pipe, cfg.num_steps, calib.num_samples, prompts, guidance_scale, seed=calib.sampler.seed)
    result = run_ptq(unet, dict(pipe.scheduler.config), method, cfg, calib, recon, data=data,
                     out_dir=out_dir, progress=progress)  # fmt: skip
    track_steps(pipe)
    return result
