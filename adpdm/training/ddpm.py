"""Train a small DDPM (epsilon prediction) on MNIST: the project's embedded default models.

The network is the DDPM CIFAR-10 UNet in miniature: residual blocks, three resolutions
(32, 16, 8) and self-attention at 16x16 and 8x8; or (``arch="dit"``) a class-conditional
diffusion transformer (diffusers' DiT: patches, adaLN-Zero blocks). Training keeps an exponential
moving average (EMA) of the weights; the EMA weights are the ones saved and shipped.

A checkpoint (``checkpoint.safetensors``: weights, EMA, AdamW moments, RNG states) is
written every ``checkpoint_every`` steps, and ``train_ddpm`` resumes from it, so a crash
loses little. It is removed once the final model is saved, so it never ships.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiTTransformer2DModel, UNet2DModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from adpdm.data.mnist import load_mnist

logger = logging.getLogger(__name__)

NUM_CLASSES = 10
NULL_CLASS = 10  # label of the unconditional branch for classifier-free guidance
CHECKPOINT_NAME = "checkpoint.safetensors"
LOG_NAME = "train_log.txt"


@dataclass
class TrainConfig:
    """Everything that defines one DDPM training run (saved beside the weights).

    Args:
        arch: ``"unet"`` or ``"dit"`` (class-conditional only: ``conditional`` must be True).
        conditional: class-conditional model (``num_class_embeds=11``: digits 0-9 plus the
            null label 10) trained with label dropout for classifier-free guidance. Default False.
        steps: optimisation steps. Default 6000.
        batch_size: images per step. Default 128.
        lr: peak AdamW learning rate, reached after ``warmup_steps`` and then cosine-decayed
            to ``lr * min_lr_ratio``. Default 1e-3.
        ema_decay: EMA decay (ramped up as ``(1 + k) / (10 + k)`` early on). Default 0.999.
        label_dropout: probability that a label is replaced by the null label. Default 0.1. A DiT
            drops its labels itself (diffusers' label embedding, probability 0.1, null label 10),
            so this setting is not applied to it.
        block_out_channels, layers_per_block, norm_num_groups, attention_head_dim: UNet shape.
        patch_size, dit_layers, dit_heads, dit_head_dim: DiT shape (patches of the 32x32 image,
            transformer blocks, attention heads and their width; hidden size heads x width).
            Default patch 4 (64 tokens), 6 blocks, 4 x 32: one training step of 64 images takes
            0.30 s on the 2-core CPU, against 2.55 s with patch 2 (256 tokens) at the same width.
        log_every: steps between loss lines in ``train_log.txt``. Default 50.
        checkpoint_every: steps between checkpoints. Default 250.
        seed: seeds the weights, the batches, the noise and the timesteps. Default 0.
        max_minutes: wall-time budget of one call; when it runs out, training stops early
            and saves what it has (the learning-rate schedule is then cut short). Default None.
        init_from: folder of a saved model (``save_pretrained`` output of the same shape) whose
            weights start the run, to continue training a shipped model; the optimiser and the
            schedule start afresh. Default None (random init).
        fit_to_time: with ``max_minutes``, measure the step rate after ``warmup_steps`` and
            shorten ``steps`` so that the whole cosine schedule ends inside the budget, instead
            of being cut off with a high learning rate. Default False.
        device: where to train (``"cpu"``, ``"cuda"``). The data, the noise and the timesteps
            are drawn on this device, so a run is reproducible per device type. Default "cpu".
    """

    arch: str = "unet"
    conditional: bool = False
    steps: int = 6000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention_head_dim: int = 32
    patch_size: int = 4
    dit_layers: int = 6
    dit_heads: int = 4
    dit_head_dim: int = 32
    split: str = "train"
    log_every: int = 50
    checkpoint_every: int = 250
    seed: int = 0
    max_minutes: float | None = None
    init_from: str | None = None
    fit_to_time: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        if self.arch not in ("unet", "dit"):
            raise ValueError(f"arch must be 'unet' or 'dit', got {self.arch!r}")
        if self.arch == "dit" and not self.conditional:
            raise ValueError("a DiT is class-conditional: set conditional=True")
        if self.arch == "dit" and 32 % self.patch_size:
            raise ValueError(f"patch_size must divide 32, got {self.patch_size}")
        positive = ("steps", "batch_size", "num_train_timesteps", "log_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.warmup_steps < 0 or not self.lr > 0:
            raise ValueError(f"need lr > 0 and warmup_steps >= 0, got {self.lr}, {self.warmup_steps}")
        for name in ("ema_decay", "label_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 or None, got {self.max_minutes}")
        if self.fit_to_time and self.max_minutes is None:
            raise ValueError("fit_to_time needs max_minutes")
        if len(self.block_out_channels) < 2:
            raise ValueError("block_out_channels needs at least two resolutions")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"channels {bad} are not divisible by norm_num_groups={self.norm_num_groups}")

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass
class TrainResult:
    """Outcome of :func:`train_ddpm`."""

    out_dir: Path
    steps: int
    final_loss: float  # mean training loss over the last ``log_every`` steps
    wall_time_s: float  # time spent in this call (a resumed run counts only its own part)


def build_unet(cfg: TrainConfig) -> UNet2DModel | DiTTransformer2DModel:
    """The denoiser for ``cfg``: a UNet with attention at every resolution but the first (32x32), or a
    DiT (``arch="dit"``) predicting eps only (no learned variance) with labels 0-9 and the null label 10."""
    if cfg.arch == "dit":
        return DiTTransformer2DModel(
            num_attention_heads=cfg.dit_heads,
            attention_head_dim=cfg.dit_head_dim,
            in_channels=1,
            out_channels=1,
            num_layers=cfg.dit_layers,
            sample_size=32,
            patch_size=cfg.patch_size,
            num_embeds_ada_norm=NUM_CLASSES,
        )
    n = len(cfg.block_out_channels)
    return UNet2DModel(
        sample_size=32,
        in_channels=1,
        out_channels=1,
        down_block_types=("DownBlock2D",) + ("AttnDownBlock2D",) * (n - 1),
        up_block_types=("AttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        attention_head_dim=cfg.attention_head_dim,
        num_class_embeds=NUM_CLASSES + 1 if cfg.conditional else None,
    )


def build_scheduler(cfg: TrainConfig) -> DDPMScheduler:
    """The DDPM noise schedule: ``num_train_timesteps`` linear betas, epsilon prediction."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule="linear",
        prediction_type="epsilon",
        # diffusers' DDIM clips the predicted x_0 but keeps the model's eps for the direction
        # term; with classifier-free guidance that leaves isolated bright pixels, so no clipping.
        clip_sample=False,
    )


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warmup to ``cfg.lr``, then cosine decay to ``cfg.lr * cfg.min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for every parameter (buffers are copied)."""
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
    for eb, b in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(b)


def ddpm_loss(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    x0: torch.Tensor,
    labels: torch.Tensor | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """Simple DDPM loss: MSE between the true and the predicted noise at a uniform timestep."""
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)  # (B, 1, 32, 32)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=x0.device)  # (B,)
    xt = scheduler.add_noise(x0, noise, t)
    pred = unet(xt, t, class_labels=labels).sample
    return F.mse_loss(pred, noise)


def _batch(
    cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One random batch (with replacement); labels dropped to the null label with prob. p."""
    idx = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=gen, device=images.device)
    if not cfg.conditional:
        return images[idx], None
    y = labels[idx].clone()
    if cfg.arch == "dit":  # its label embedding drops labels itself while training
        return images[idx], y
    y[torch.rand(cfg.batch_size, generator=gen, device=images.device) < cfg.label_dropout] = NULL_CLASS
    return images[idx], y


def save_checkpoint(path: Path, step: int, unet, ema, opt, gen: torch.Generator, cfg: TrainConfig) -> None:
    """Write weights, EMA, AdamW moments and RNG states to one safetensors file (atomically)."""
    tensors = {f"model.{k}": v for k, v in unet.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    names = dict(unet.named_parameters())
    for name, p in names.items():
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq", "step"):
            if key in state:
                tensors[f"opt.{key}.{name}"] = torch.as_tensor(state[key]).reshape(-1)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = gen.get_state()
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    meta = {"step": str(step), "config": json.dumps(cfg.to_dict())}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_checkpoint(path: Path, unet, ema, opt, gen: torch.Generator) -> int:
    """Restore a :func:`save_checkpoint` file into the given objects; returns its step."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        step = int(f.metadata()["step"])
    tensors = load_file(str(path))
    unet.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    for name, p in unet.named_parameters():
        if f"opt.exp_avg.{name}" in tensors:
            opt.state[p] = {
                "step": tensors[f"opt.step.{name}"].reshape(()),
                "exp_avg": tensors[f"opt.exp_avg.{name}"].view_as(p),
                "exp_avg_sq": tensors[f"opt.exp_avg_sq.{name}"].view_as(p),
            }
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.data"])
    return step


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fit_schedule(cfg: TrainConfig, out_dir: Path, step: int, rate: float, t0: float) -> TrainConfig:
    """Shorten ``cfg.steps`` so the schedule ends within ``max_minutes`` at ``rate`` steps/s."""
    left = 60 * cfg.max_minutes - (time.perf_counter() - t0)
    steps = min(cfg.steps, step + int(0.97 * left * rate))
    _log_line(out_dir, f"fit_to_time: {rate:.1f} steps/s, schedule set to {steps} steps")
    cfg = dataclasses.replace(cfg, steps=steps)
    (out_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return cfg


def _log_line(out_dir: Path, line: str) -> None:
    """Log ``line`` and append it to ``train_log.txt``."""
    logger.info(line)
    with open(out_dir / LOG_NAME, "a") as f:
        f.write(line + "\n")


def train_ddpm(
    cfg: TrainConfig, out_dir: str | Path, *, data: tuple[torch.Tensor, torch.Tensor] | None = None
) -> TrainResult:
    """Train a DDPM on MNIST and save its EMA weights with ``save_pretrained`` in ``out_dir``.

    Resumes from ``out_dir/checkpoint.safetensors`` when one exists.

    Args:
        cfg: the run's :class:`TrainConfig`.
        out_dir: receives ``config.json`` + ``diffusion_pytorch_model.safetensors`` (EMA
            weights), ``scheduler_config.json``, ``train_config.json`` and ``train_log.txt``.
        data: ``(images (N, 1, 32, 32) in [-1, 1], labels (N,))``; default ``load_mnist(cfg.split)``.

    Example::

        result = train_ddpm(TrainConfig(conditional=True, steps=6000), "assets/mnist-cond")
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    images, labels = data if data is not None else load_mnist(cfg.split)
    images, labels = images.to(device), labels.to(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device).manual_seed(cfg.seed + 1)
    unet, scheduler = build_unet(cfg).train(), build_scheduler(cfg)
    if cfg.init_from is not None:
        unet.load_state_dict(load_file(str(Path(cfg.init_from) / "diffusion_pytorch_model.safetensors")))
    unet.to(device)
    ema = build_unet(cfg).to(device).eval().requires_grad_(False)
    ema.load_state_dict(unet.state_dict())
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    start = 0
    ckpt = out_dir / CHECKPOINT_NAME
    if ckpt.exists():
        start = load_checkpoint(ckpt, unet, ema, opt, gen)
        _log_line(out_dir, f"resumed from {ckpt.name} at step {start}")
    else:
        n_params = sum(p.numel() for p in unet.parameters())
        _log_line(out_dir, f"config {json.dumps(cfg.to_dict())}")
        _log_line(out_dir, f"unet parameters {n_params}")
    (out_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    t0, window, final_loss, done = time.perf_counter(), [], float("nan"), start
    fit_from, fit_at, t_fit = start + cfg.warmup_steps // 2, start + max(cfg.warmup_steps, 2), 0.0
    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, mininterval=10, desc="ddpm"):
        if step >= cfg.steps:  # the schedule was shortened by fit_to_time
            break
        if cfg.fit_to_time and step in (fit_from, fit_at):
            _synchronize(device)
            if step == fit_from:
                t_fit = time.perf_counter()
            else:
                cfg = _fit_schedule(cfg, out_dir, step, (fit_at - fit_from) / (time.perf_counter() - t_fit), t0)
        lr = learning_rate(cfg, step)
        for group in opt.param_groups:
            group["lr"] = lr
        x0, y = _batch(cfg, images, labels, gen)
        loss = ddpm_loss(unet, scheduler, x0, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, unet, min(cfg.ema_decay, (1 + step) / (10 + step)))
        window.append(loss.detach())  # no host sync per step: checked at every log line
        done = step + 1
        out_of_time = cfg.max_minutes is not None and time.perf_counter() - t0 > 60 * cfg.max_minutes
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps or out_of_time:
            elapsed = time.perf_counter() - t0
            mean = torch.stack(window).mean().item()
            if not math.isfinite(mean):
                raise FloatingPointError(f"non-finite loss in the {len(window)} steps before step {step + 1}")
            _log_line(out_dir, f"step {step + 1} loss {mean:.5f} lr {lr:.2e} elapsed {elapsed:.0f}s")
            final_loss, window = mean, []
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            save_checkpoint(ckpt, step + 1, unet, ema, opt, gen, cfg)
        if out_of_time:
            _log_line(out_dir, f"max_minutes={cfg.max_minutes} reached: stopping at step {done}")
            break

    ema.save_pretrained(out_dir)
    scheduler.save_pretrained(out_dir)
    ckpt.unlink(missing_ok=True)
    wall = time.perf_counter() - t0
    _log_line(out_dir, f"done: {done} steps, EMA weights saved, wall {wall:.0f}s")
    return TrainResult(out_dir=out_dir, steps=done, final_loss=final_loss, wall_time_s=wall)
