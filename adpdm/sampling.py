"""Sampling with common random numbers: the same noise for sample ``i`` whatever the model.

Comparing a full-precision model with its quantized copy is only fair when both start from
the same noise and receive the same per-step noise. Every random tensor here is drawn from a
generator keyed by ``(seed, i)`` (initial noise) or ``(seed, i, k)`` (noise added at step
``k``), so sample ``i`` does not depend on the batch size, on how many samples are drawn, on
the device or on the model.

Example::

    cfg = SamplerConfig(scheduler="ddim", num_steps=50, seed=0)
    fp = sample(model.unet, model.scheduler_config, 64, cfg)
    q = sample(quantized_unet, model.scheduler_config, 64, cfg)
    side_by_side({"fp32": fp.images, "w4a8": q.images}, "compare.png")
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from .context import step_context

logger = logging.getLogger(__name__)

SCHEDULERS: tuple[str, ...] = ("ddim", "ddpm")
# Keys separating the two noise streams of a sample (initial noise, per-step noise).
_INITIAL, _STEP = 0, 1


@dataclass
class SamplerConfig:
    """How to sample.

    Args:
        scheduler: ``"ddim"`` or ``"ddpm"`` (ancestral sampling).
        num_steps: number of denoising steps K (default 100).
        eta: DDIM stochasticity in [0, 1]; 0 is deterministic DDIM (ddim only).
        guidance_scale: classifier-free guidance scale s; 1.0 disables guidance.
        batch_size: samples per batch (the denoiser sees twice as many under guidance).
        seed: non-negative seed of the common random numbers.
    """

    scheduler: str = "ddim"
    num_steps: int = 100
    eta: float = 0.0
    guidance_scale: float = 1.0
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if self.eta != 0.0 and self.scheduler != "ddim":
            raise ValueError(f"eta applies to the ddim scheduler only; use eta=0 with {self.scheduler!r}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0.0):
            raise ValueError(f"guidance_scale must be finite and >= 0, got {self.guidance_scale}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass
class SampleOutput:
    """Generated samples.

    Args:
        images: (N, C, H, W) float32 on the CPU, clipped to [-1, 1].
        labels: (N,) class labels used, or ``None`` for an unconditional model.
    """

    images: torch.Tensor
    labels: torch.Tensor | None


class DenoiserInputs(NamedTuple):
    """The exact arguments of one denoiser call, as given to the ``callback`` of :func:`sample`."""

    sample: torch.Tensor  # (B, C, H, W), B = 2 x batch under guidance ([cond, uncond])
    timestep: torch.Tensor  # 0-d, on the denoiser's device
    class_labels: torch.Tensor | None  # (B,) or None


Callback = Callable[[int, torch.Tensor, DenoiserInputs], None]


def make_scheduler(scheduler_config: dict, cfg: SamplerConfig) -> DDIMScheduler | DDPMScheduler:
    """Build the ``cfg.scheduler`` scheduler from a diffusers config, with ``cfg.num_steps`` timesteps."""
    cls = DDIMScheduler if cfg.scheduler == "ddim" else DDPMScheduler
    scheduler = cls.from_config(dict(scheduler_config))
    scheduler.set_timesteps(cfg.num_steps)
    return scheduler


def eps_sensitivity(scheduler_config: dict, cfg: SamplerConfig) -> torch.Tensor:
    """(K,) how far an error in the denoiser's output at step k moves the sampler's next state.

    The deterministic part of every update is linear in the denoiser output: ``x_{k+1} = a_k x_k
    + b_k eps``; this returns ``|b_k|`` (finite difference of the scheduler's own step). For DDIM
    on the embedded models it falls from about 0.6 at the first step to 0.01 at the last one,
    where an error in eps barely changes the sample.
    """
    scheduler = make_scheduler(scheduler_config, cfg)
    delta, zero = 1e-3, torch.zeros(1, dtype=torch.float64)
    moved = torch.full((1,), delta, dtype=torch.float64)
    out = []
    for t in scheduler.timesteps:
        if cfg.scheduler == "ddim":
            a, b = (scheduler.step(e, t, zero, eta=cfg.eta, variance_noise=zero).prev_sample for e in (moved, zero))
        else:
            a, b = (ddpm_step(scheduler, e, t, zero, zero) for e in (moved, zero))
        out.append(abs(float(a - b)) / delta)
    return torch.tensor(out)


def _keyed_normal(shape: Sequence[int], seed: int, key: Sequence[int]) -> torch.Tensor:
    """A standard normal float32 CPU tensor that depends only on ``(seed, *key)``."""
    state = np.random.SeedSequence([seed, *key]).generate_state(1, np.uint64)[0]
    generator = torch.Generator().manual_seed(int(state))
    return torch.randn(tuple(shape), generator=generator)


def initial_noise(num: int, shape: Sequence[int], seed: int, start: int = 0) -> torch.Tensor:
    """Initial noise x_T of samples ``start .. start + num - 1``: (num, *shape) float32 on the CPU.

    Args:
        num: number of samples.
        shape: shape of one sample, e.g. (C, H, W).
        seed: seed of the run; sample ``i`` depends only on ``(seed, i)``.
        start: index of the first sample.
    """
    return torch.stack([_keyed_normal(shape, seed, (i, _INITIAL, 0)) for i in range(start, start + num)])


def step_noise(num: int, shape: Sequence[int], seed: int, step: int, start: int = 0) -> torch.Tensor:
    """Noise added at step index ``step`` to samples ``start ..``: depends only on ``(seed, i, step)``."""
    return torch.stack([_keyed_normal(shape, seed, (i, _STEP, step)) for i in range(start, start + num)])


def ddpm_step(
    scheduler: DDPMScheduler, eps: torch.Tensor, t: torch.Tensor, x: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """One ancestral DDPM update x_t -> x_{t'} (t' the previous timestep) with the given noise.

    Notation (Ho et al. 2020, eqs. 6-7, on a strided schedule t -> t'):
        a_t = alpha_bar_t, a_prev = alpha_bar_{t'} (1 at the end), beta = 1 - a_t / a_prev
        x0 = predicted x_0; mean = mu_tilde(x_t, x0); var = beta_tilde ("fixed_small") or beta.
    """
    a_t = float(scheduler.alphas_cumprod[int(t)])
    prev_t = int(scheduler.previous_timestep(int(t)))
    a_prev = float(scheduler.alphas_cumprod[prev_t]) if prev_t >= 0 else 1.0
    beta = 1.0 - a_t / a_prev
    config = scheduler.config
    # 1. predicted x_0
    if config.prediction_type == "epsilon":
        x0 = (x - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
    elif config.prediction_type == "v_prediction":
        x0 = math.sqrt(a_t) * x - math.sqrt(1.0 - a_t) * eps
    elif config.prediction_type == "sample":
        x0 = eps
    else:
        raise ValueError(f"unsupported prediction_type {config.prediction_type!r}")
    if config.thresholding:
        raise ValueError("dynamic thresholding is not supported by the ddpm sampler; use scheduler='ddim'")
    if config.clip_sample:
        x0 = x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    # 2. posterior mean mu_tilde = c0 * x0 + ct * x_t (eq. 7)
    c0 = math.sqrt(a_prev) * beta / (1.0 - a_t)
    ct = math.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a_t)
    mean = c0 * x0 + ct * x
    if prev_t < 0:  # last step: x_0 has no noise
        return mean
    # 3. add sqrt(var) * z
    if config.variance_type in ("fixed_small", "fixed_small_log"):
        var = max((1.0 - a_prev) / (1.0 - a_t) * beta, 1e-20)
    elif config.variance_type == "fixed_large":
        var = beta
    else:
        raise ValueError(f"unsupported variance_type {config.variance_type!r} for the ddpm sampler")
    return mean + math.sqrt(var) * noise.to(mean)


def _denoiser_dtype_device(unet: Any, device: torch.device | str | None) -> tuple[torch.dtype, torch.device]:
    params = list(unet.parameters()) if isinstance(unet, torch.nn.Module) else []
    dtype = getattr(unet, "dtype", None) or (params[0].dtype if params else torch.float32)
    if device is None:
        device = getattr(unet, "device", None) or (params[0].device if params else "cpu")
    return dtype, torch.device(device)


def _sample_shape(unet: Any) -> tuple[int, int, int]:
    config = getattr(unet, "config", None)
    if config is None:
        raise ValueError("the denoiser has no `config`; pass sample_shape=(C, H, W)")
    size = config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (config.in_channels, height, width)


def _resolve_labels(
    num: int, labels: Sequence[int] | torch.Tensor | None, num_classes: int | None
) -> torch.Tensor | None:
    if num_classes is None:
        if labels is not None:
            raise ValueError("labels were given for an unconditional model; pass num_classes too")
        return None
    pattern = torch.as_tensor(labels if labels is not None else range(num_classes), dtype=torch.long).flatten()
    if pattern.numel() == 0 or int(pattern.min()) < 0 or int(pattern.max()) >= num_classes:
        raise ValueError(f"labels must be non-empty and in [0, {num_classes}), got {pattern.tolist()}")
    return pattern[torch.arange(num) % pattern.numel()]


def _denoise(
    unet: Any,
    x: torch.Tensor,
    t: torch.Tensor,
    k: int,
    y: torch.Tensor | None,
    cfg: SamplerConfig,
    null_class: int | None,
    dtype: torch.dtype,
    callback: Callback | None,
) -> torch.Tensor:
    """eps for the batch ``x`` at step ``k``, guided with one batched call when guidance is on."""
    guided = y is not None and cfg.guidance_scale != 1.0
    x_in, y_in = x, y
    if guided:
        x_in = torch.cat([x, x])  # (2B, C, H, W): [cond, uncond]
        y_in = torch.cat([y, torch.full_like(y, null_class)])
    inputs = DenoiserInputs(x_in.to(dtype), t.to(x.device), y_in)
    with step_context(k):
        if callback is not None:
            callback(k, t, inputs)
        t_in = inputs.timestep.expand(len(inputs.sample))  # one per row: transformers need a 1-d timestep
        eps = unet(inputs.sample, t_in, class_labels=inputs.class_labels).sample.float()
    if eps.shape[1] == 2 * x.shape[1]:  # a learned variance after eps (DiT's learn_sigma): keep eps
        eps = eps[:, : x.shape[1]]
    if guided:
        eps_c, eps_u = eps.chunk(2)
        eps = eps_u + cfg.guidance_scale * (eps_c - eps_u)
    if eps.shape != x.shape:
        raise ValueError(f"the denoiser returned shape {tuple(eps.shape)} for input {tuple(x.shape)}")
    return eps


def sample(
    unet: Any,
    scheduler_config: dict,
    num: int,
    cfg: SamplerConfig,
    labels: Sequence[int] | torch.Tensor | None = None,
    num_classes: int | None = None,
    null_class: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    callback: Callback | None = None,
    sample_shape: tuple[int, int, int] | None = None,
    first: int = 0,
    clamp: bool = True,
) -> SampleOutput:
    """Draw ``num`` samples from a denoiser with common random numbers.

    Args:
        unet: a diffusers ``UNet2DModel`` or any callable ``unet(sample, timestep, class_labels=None)``
            returning an object with ``.sample`` (e.g. a quantized UNet).
        scheduler_config: the model's diffusers scheduler config (e.g. a ``DDPMScheduler`` config).
        num: number of samples.
        cfg: the :class:`SamplerConfig`.
        labels: class labels; sample ``i`` gets ``labels[i % len(labels)]``. Default ``i % num_classes``.
        num_classes: number of classes of a conditional model; ``None`` (default) = unconditional.
        null_class: label of the unconditional branch, required when ``cfg.guidance_scale != 1``.
        device: where the inputs are placed; default the unet's device (the unet must live there).
        progress: show a tqdm bar over batches x steps (default True).
        callback: ``callback(k, t, inputs)`` called inside ``step_context(k)`` right before each denoiser
            call with the step index ``k``, the scheduler timestep ``t`` and the exact
            :class:`DenoiserInputs` (under guidance a single batch ``[cond, uncond]``). The tensors are
            the ones passed to the denoiser: clone them to keep them, never modify them.
        sample_shape: (C, H, W) of one sample; default from ``unet.config``.
        first: global index of the first sample: samples ``first .. first + num - 1`` are drawn,
            each from its own keyed noise and label, so shards of a run (``first`` at batch
            boundaries) reproduce it exactly (see :mod:`adpdm.distributed`).
        clamp: clamp the final samples to [-1, 1] (pixels); False for latents a VAE decodes.

    Example::

        out = sample(unet, scheduler_config, 16, SamplerConfig(num_steps=50), num_classes=10, null_class=10)
        save_grid(out.images, "grid.png")
    """
    if num < 1 or first < 0:
        raise ValueError(f"need num >= 1 and first >= 0, got {num}, {first}")
    y_all = _resolve_labels(first + num, labels, num_classes)
    y_all = y_all[first:] if y_all is not None else None
    if cfg.guidance_scale != 1.0 and (y_all is None or null_class is None):
        raise ValueError("guidance_scale != 1 needs a conditional model: pass num_classes and null_class")
    shape = sample_shape or _sample_shape(unet)
    dtype, device = _denoiser_dtype_device(unet, device)
    scheduler = make_scheduler(scheduler_config, cfg)
    logger.debug("sampling %d images %s with %s on %s", num, shape, cfg, device)
    batches = []
    total = math.ceil(num / cfg.batch_size) * len(scheduler.timesteps)
    with torch.no_grad(), tqdm(total=total, desc="sampling", disable=not progress) as bar:
        for start in range(0, num, cfg.batch_size):
            n = min(cfg.batch_size, num - start)
            y = y_all[start : start + n].to(device) if y_all is not None else None
            x = initial_noise(n, shape, cfg.seed, first + start).to(device)  # (n, C, H, W) float32
            for k, t in enumerate(scheduler.timesteps):
                eps = _denoise(unet, x, t, k, y, cfg, null_class, dtype, callback)
                if cfg.scheduler == "ddim":
                    noise = step_noise(n, shape, cfg.seed, k, first + start).to(device) if cfg.eta > 0 else None
                    x = scheduler.step(eps, t, x, eta=cfg.eta, variance_noise=noise).prev_sample
                else:
                    x = ddpm_step(scheduler, eps, t, x, step_noise(n, shape, cfg.seed, k, first + start).to(device))
                bar.update(1)
            batches.append((x.clamp(-1.0, 1.0) if clamp else x).float().cpu())
    return SampleOutput(images=torch.cat(batches), labels=y_all)


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile images in [-1, 1] into one uint8 array (H, W, C), C = 1 or 3, with white padding.

    Args:
        images: (N, C, H, W) with C = 1 or 3.
        nrow: images per row; default ceil(sqrt(N)).
        padding: pixels between and around images (default 2).
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"images must be (N, 1 or 3, H, W) with N >= 1, got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, np.uint8)
    for i, image in enumerate(pixels.permute(0, 2, 3, 1).numpy()):  # (H, W, C)
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def _to_pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write images in [-1, 1] (N, C, H, W) as one PNG grid; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(make_grid(images, nrow)).save(path)
    return path


def side_by_side(grids: dict[str, torch.Tensor], path: str | Path, nrow: int | None = None) -> Path:
    """Write one PNG with a labelled grid panel per model (e.g. FP vs quantized from the same noise).

    Args:
        grids: ``{model name: images (N, C, H, W) in [-1, 1]}``, panels left to right.
        path: output PNG.
        nrow: images per row in each panel; default ceil(sqrt(N)).
    """
    if not grids:
        raise ValueError("grids is empty")
    panels = {name: _to_pil(make_grid(images, nrow)).convert("RGB") for name, images in grids.items()}
    font = ImageFont.load_default()
    header, gap = 16, 8
    width = sum(p.width for p in panels.values()) + gap * (len(panels) + 1)
    height = max(p.height for p in panels.values()) + header + 2 * gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    left = gap
    for name, panel in panels.items():
        draw.text((left, gap // 2), name, fill="black", font=font)
        canvas.paste(panel, (left, gap + header))
        left += panel.width + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
