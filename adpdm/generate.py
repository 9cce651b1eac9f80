"""Sample any model kind, FP or quantized, from the same noise.

``unconditional`` and ``class`` models run on adpdm's own sampler (:func:`adpdm.sampling.sample`,
common random numbers per sample and per step). ``text`` models run through their own
diffusers pipeline with the denoiser swapped in, the scheduler rebuilt from the model's
config (DDIM or DDPM, K steps) and the initial latents of sample ``i`` drawn from the same
keyed noise, so FP and quantized images still compare sample by sample (deterministic
DDIM; the per-step noise of DDPM / eta > 0 is seeded per batch there).

Example::

    model = load_model("my_sd_folder")
    cond = Conditioning(prompts=["a red car", "a tree"])
    check_conditioning(model, cond, SamplerConfig(guidance_scale=7.5))
    out = generate(model, model.unet, 4, SamplerConfig(num_steps=50, guidance_scale=7.5), cond)
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from tqdm.auto import tqdm

from .models.loading import DiffusionModel
from .sampling import SampleOutput, SamplerConfig, initial_noise, make_scheduler, sample

logger = logging.getLogger(__name__)


@dataclass
class Conditioning:
    """What the samples are conditioned on.

    Args:
        labels: class labels of a class-conditional model, repeated over the samples
            (default ``0 .. num_classes - 1``).
        prompts: prompts of a text-conditioned model, repeated over the samples.
    """

    labels: Sequence[int] | None = None
    prompts: Sequence[str] | None = None


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a text file, one per non-empty line; a clear error for a missing or empty file."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read --prompts {path}: {err}") from err
    prompts = [line for line in lines if line]
    if not prompts:
        raise ValueError(f"--prompts {path} holds no prompt: write one prompt per line")
    return prompts


def parse_labels(text: str | None) -> list[int] | None:
    """``"3,7"`` -> ``[3, 7]``; ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise ValueError(f"--labels must be comma-separated integers, got {text!r}") from err
    if not labels:
        raise ValueError(f"--labels holds no label: {text!r}")
    return labels


def check_conditioning(model: DiffusionModel, cond: Conditioning, cfg: SamplerConfig) -> None:
    """Refuse, before any work, conditioning the model cannot take, saying what to pass."""
    kind = model.kind
    if cond.prompts is not None and kind != "text":
        raise ValueError(f"--prompts is for text-conditioned pipelines; {model.spec} is {kind}")
    if kind == "text" and not cond.prompts:
        raise ValueError(f"{model.spec} is text-conditioned: pass --prompts FILE (one prompt per line)")
    if cond.labels is not None:
        if kind != "class":
            raise ValueError(f"--labels is for class-conditional models; {model.spec} is {kind}")
        bad = [y for y in cond.labels if not 0 <= y < model.num_classes]
        if bad:
            raise ValueError(f"labels {bad} are outside the classes of {model.spec}: use labels in "
                             f"[0, {model.num_classes})")  # fmt: skip
    if cfg.guidance_scale != 1.0 and kind == "unconditional":
        raise ValueError(f"--guidance needs a conditional model; {model.spec} is unconditional")
    if cfg.guidance_scale != 1.0 and kind == "class" and model.null_class is None:
        raise ValueError(f"classifier-free guidance on {model.spec} needs the label it was trained on as "
                         "'no class': pass --null-class N, or --guidance 1")  # fmt: skip


def generate(
    model: DiffusionModel,
    unet: Any,
    num: int,
    cfg: SamplerConfig,
    cond: Conditioning | None = None,
    progress: bool = True,
    state: Any = None,
) -> SampleOutput:
    """``num`` samples of ``model`` with the denoiser ``unet`` (its FP UNet or a quantized copy).

    Args:
        model: the loaded model (schedule, classes, pipeline).
        unet: the denoiser to sample with; under an ``accelerate`` ``state`` the batches are
            spread over its processes (not for text models).
        num: number of samples.
        cfg: the sampler (scheduler, K, eta, guidance, batch size, seed).
        cond: labels or prompts (see :class:`Conditioning`).
        progress: show a progress bar.
        state: an ``accelerate`` state, or ``None``.
    """
    cond = cond or Conditioning()
    check_conditioning(model, cond, cfg)
    if model.kind == "text":
        if state is not None:
            raise ValueError("text-conditioned pipelines sample in one process: launch without accelerate")
        return _generate_text(model, unet, num, cfg, list(cond.prompts), progress)
    kw = dict(labels=cond.labels, num_classes=model.num_classes, null_class=model.null_class, progress=progress,
              clamp=not model.latent)  # fmt: skip
    if state is None:
        out = sample(unet, model.scheduler_config, num, cfg, **kw)
    else:
        from .distributed import sample_distributed

        out = sample_distributed(unet, model.scheduler_config, num, cfg, state=state, **kw)
    return decode_latents(model, out, cfg.batch_size) if model.latent else out


@torch.no_grad()
def decode_latents(model: DiffusionModel, out: SampleOutput, batch_size: int) -> SampleOutput:
    """Images in [-1, 1] from the latents of a latent model (its pipeline's VAE, ``batch_size`` at a time)."""
    vae = model.pipeline.vae
    scale = float(vae.config.get("scaling_factor", 1.0))
    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    images = [vae.decode(z.to(device, dtype) / scale).sample.float().cpu() for z in out.images.split(batch_size)]
    return SampleOutput(images=torch.cat(images).clamp(-1.0, 1.0), labels=out.labels)


class _PipelineUNet(torch.nn.Module):
    """A denoiser that is no torch module (an ONNX Runtime export, :class:`adpdm.deploy.OnnxDenoiser`) as the
    UNet or transformer a diffusers pipeline calls: the FP denoiser's ``config``, ``dtype`` and ``device``, CPU
    float32 tensors in and out. It takes a UNet's call ``(sample, timestep, encoder_hidden_states)`` and
    PixArt's (keyword timestep, ``encoder_attention_mask``, ``added_cond_kwargs`` without values)."""

    def __init__(self, denoiser: Any, config: Any) -> None:
        super().__init__()
        self.denoiser, self.config = denoiser, config
        self.register_buffer("anchor", torch.zeros(()))  # the pipeline's device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @torch.no_grad()
    def forward(
        self,
        sample: torch.Tensor,
        timestep: Any,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        **_: Any,
    ) -> Any:
        given = sorted(k for k, v in (added_cond_kwargs or {}).items() if v is not None)
        if given:
            raise ValueError(f"the ONNX export takes no added_cond_kwargs; the pipeline passes {', '.join(given)}")
        eps = self.denoiser(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                            encoder_attention_mask=encoder_attention_mask).sample  # fmt: skip
        return SimpleNamespace(sample=eps) if return_dict else (eps,)


def _generate_text(
    model: DiffusionModel, unet: Any, num: int, cfg: SamplerConfig, prompts: list[str], progress: bool
) -> SampleOutput:
    from .pipelines import StepTracker

    pipe = model.pipeline
    scheduler = make_scheduler(model.scheduler_config, cfg)
    if not isinstance(unet, torch.nn.Module):
        unet = _PipelineUNet(unet, model.unet.config)
    c = unet.config
    size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
    shape = (c.in_channels, size, size)  # latents of one sample
    slot = "unet" if isinstance(getattr(pipe, "unet", None), torch.nn.Module) else "transformer"  # PixArt's
    saved = getattr(pipe, slot), pipe.scheduler
    setattr(pipe, slot, unet)
    pipe.scheduler = scheduler
    pipe.to(next(iter([*unet.parameters(), *unet.buffers()])).device)
    tracker = StepTracker(unet, scheduler)
    pipe.set_progress_bar_config(disable=True)
    params = inspect.signature(pipe.__call__).parameters
    extra = {"use_resolution_binning": False} if "use_resolution_binning" in params else {}  # PixArt
    images = []
    try:
        for start in tqdm(range(0, num, cfg.batch_size), total=math.ceil(num / cfg.batch_size), desc="sampling",
                          disable=not progress):  # fmt: skip
            n = min(cfg.batch_size, num - start)
            out = pipe(
                prompt=[prompts[i % len(prompts)] for i in range(start, start + n)],
                latents=initial_noise(n, shape, cfg.seed, start),
                num_inference_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale, eta=cfg.eta,
                generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + start), output_type="pt", **extra,
            )  # fmt: skip
            images.append(out.images.float().cpu() * 2.0 - 1.0)  # [0, 1] -> [-1, 1]
    finally:
        tracker.remove()
        setattr(pipe, slot, saved[0])
        pipe.scheduler = saved[1]
    return SampleOutput(images=torch.cat(images).clamp(-1.0, 1.0), labels=None)
