"""DDPM training on a tiny UNet: finite loss, EMA, checkpoints and exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file

from adpdm.training.ddpm import (
    CHECKPOINT_NAME,
    NULL_CLASS,
    TrainConfig,
    _batch,
    learning_rate,
    train_ddpm,
)


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        steps=4, batch_size=4, block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8,
        warmup_steps=1, log_every=1, checkpoint_every=2, ema_decay=0.9,
    )  # fmt: skip
    return TrainConfig(**(base | kw))


def tiny_data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 32, 32, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)


def _crash_on_save(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(UNet2DModel, "save_pretrained", boom)


@pytest.mark.parametrize("conditional", [False, True])
def test_train_writes_the_ema_model(tmp_path, conditional: bool) -> None:
    result = train_ddpm(tiny_config(conditional=conditional), tmp_path, data=tiny_data())
    assert result.steps == 4 and math.isfinite(result.final_loss)
    unet = UNet2DModel.from_pretrained(tmp_path, low_cpu_mem_usage=False)
    assert unet.config.num_class_embeds == (11 if conditional else None)
    assert (tmp_path / "scheduler_config.json").is_file()
    assert not (tmp_path / CHECKPOINT_NAME).exists()  # the checkpoint never ships
    log = (tmp_path / "train_log.txt").read_text()
    assert "step 1 loss" in log and "step 4 loss" in log


def test_train_a_dit_that_the_pipeline_loads_with_its_null_label(tmp_path) -> None:
    from diffusers import DDIMScheduler, DiTTransformer2DModel

    from adpdm.models.loading import load_model

    cfg = tiny_config(arch="dit", conditional=True, patch_size=8, dit_layers=1, dit_heads=2, dit_head_dim=8)
    result = train_ddpm(cfg, tmp_path / "dit", data=tiny_data())
    assert result.steps == 4 and math.isfinite(result.final_loss)
    dit = DiTTransformer2DModel.from_pretrained(tmp_path / "dit", low_cpu_mem_usage=False)
    assert dit.config.out_channels == 1 and dit.config.patch_size == 8
    # label 10 is the trained null label: a DiT folder of it samples with guidance
    from diffusers import AutoencoderKL, DiTPipeline

    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=1)
    DiTPipeline(dit, vae, DDIMScheduler.from_pretrained(tmp_path / "dit")).save_pretrained(tmp_path / "pipe")
    model = load_model(str(tmp_path / "pipe"))
    assert (model.num_classes, model.null_class) == (10, 10)
    with pytest.raises(ValueError, match="class-conditional"):
        TrainConfig(arch="dit")


def test_checkpoint_holds_ema_distinct_from_weights_and_resume_is_exact(tmp_path, monkeypatch) -> None:
    cfg, data = tiny_config(), tiny_data()
    straight = train_ddpm(cfg, tmp_path / "straight", data=data)
    with monkeypatch.context() as m:
        _crash_on_save(m)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train_ddpm(cfg, tmp_path / "crashed", data=data)
    ckpt = load_file(str(tmp_path / "crashed" / CHECKPOINT_NAME))  # written at step 2
    weights = {k[6:]: v for k, v in ckpt.items() if k.startswith("model.")}
    ema = {k[4:]: v for k, v in ckpt.items() if k.startswith("ema.")}
    assert weights.keys() == ema.keys()
    assert any(not torch.equal(weights[k], ema[k]) for k in weights)
    assert all(torch.isfinite(v).all() for v in weights.values())

    resumed = train_ddpm(cfg, tmp_path / "crashed", data=data)  # restarts at step 2
    assert "resumed from checkpoint.safetensors at step 2" in (tmp_path / "crashed" / "train_log.txt").read_text()
    a = load_file(str(straight.out_dir / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(resumed.out_dir / "diffusion_pytorch_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, min_lr_ratio=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(1e-5)
    assert learning_rate(cfg, 99) == pytest.approx(1e-3)
    assert learning_rate(cfg, 550) == pytest.approx(0.55e-3)  # cosine midpoint
    assert learning_rate(cfg, 1000) == pytest.approx(1e-4)


def test_label_dropout_rate() -> None:
    cfg = TrainConfig(conditional=True, batch_size=4000, label_dropout=0.1)
    images, labels = tiny_data(64)
    _, y = _batch(cfg, images, labels, torch.Generator().manual_seed(0))
    frac = float((y == NULL_CLASS).float().mean())
    assert 0.08 < frac < 0.12  # 4000 draws: std of the fraction is 0.005
    assert int(y.max()) <= NULL_CLASS and int(y.min()) >= 0


@pytest.mark.parametrize(
    "kw",
    [
        dict(steps=0),
        dict(ema_decay=1.0),
        dict(label_dropout=-0.1),
        dict(norm_num_groups=5),
        dict(lr=0.0),
        dict(arch="vit"),
        dict(arch="dit", conditional=True, patch_size=3),
    ],  # fmt: skip
)
def test_config_validation(kw: dict) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**kw)


def test_init_from_starts_at_the_saved_weights(tmp_path) -> None:
    first = train_ddpm(tiny_config(), tmp_path / "a", data=tiny_data())
    saved = load_file(str(first.out_dir / "diffusion_pytorch_model.safetensors"))
    # lr ~ 0: the continued run must end where it started
    cont = train_ddpm(tiny_config(init_from=str(first.out_dir), lr=1e-12), tmp_path / "b", data=tiny_data())
    again = load_file(str(cont.out_dir / "diffusion_pytorch_model.safetensors"))
    for k in saved:
        torch.testing.assert_close(saved[k], again[k], rtol=0, atol=1e-6)


def test_fit_to_time_shortens_the_schedule_to_the_budget(tmp_path, monkeypatch) -> None:
    clock = iter(range(0, 10_000_000))  # a fake clock: one second per reading
    monkeypatch.setattr("adpdm.training.ddpm.time.perf_counter", lambda: float(next(clock)))
    cfg = tiny_config(steps=10_000, warmup_steps=4, max_minutes=1.0, fit_to_time=True, log_every=1000)
    result = train_ddpm(cfg, tmp_path, data=tiny_data())
    saved = TrainConfig(**json.loads((tmp_path / "train_config.json").read_text()))
    assert 4 < result.steps == saved.steps < 60  # ~1 reading per step: the 60 s budget holds a few dozen
    assert "fit_to_time" in (tmp_path / "train_log.txt").read_text()


def test_fit_to_time_needs_a_budget() -> None:
    with pytest.raises(ValueError, match="max_minutes"):
        tiny_config(fit_to_time=True)
