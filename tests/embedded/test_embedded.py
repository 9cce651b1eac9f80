"""The embedded default models: names, errors, and the shipped weights."""

from __future__ import annotations

import pytest
import torch

import adpdm.embedded as embedded
from adpdm.embedded import available_embedded, embedded_dir, load_embedded


def _shipped(name: str) -> bool:
    return (embedded_dir(name) / embedded.WEIGHTS_NAME).is_file()


def test_available_names() -> None:
    assert available_embedded() == ["mnist", "mnist-cond", "mnist-dit"]


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"available: \['mnist', 'mnist-cond', 'mnist-dit'\]"):
        load_embedded("cifar10")
    with pytest.raises(ValueError):
        load_embedded("embedded:")


def test_missing_weights_say_how_to_train(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(embedded, "ASSETS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="scripts/train_embedded.py --name mnist-cond"):
        load_embedded("embedded:mnist-cond")


def test_a_dit_folder_loads_as_a_dit(tmp_path, monkeypatch) -> None:
    from adpdm.training.ddpm import TrainConfig, build_scheduler, build_unet

    cfg = TrainConfig(arch="dit", conditional=True, patch_size=8, dit_layers=1, dit_heads=2, dit_head_dim=8)
    build_unet(cfg).save_pretrained(tmp_path / "mnist-dit")
    build_scheduler(cfg).save_pretrained(tmp_path / "mnist-dit")
    monkeypatch.setattr(embedded, "ASSETS_DIR", tmp_path)
    model = load_embedded("embedded:mnist-dit")
    assert type(model.unet).__name__ == "DiTTransformer2DModel" and not model.unet.training
    assert (model.num_classes, model.null_class) == (10, 10)
    with torch.no_grad():
        eps = model.unet(torch.randn(2, 1, 32, 32), torch.tensor([10, 900]), class_labels=torch.tensor([3, 10]))
    assert eps.sample.shape == (2, 1, 32, 32)


def test_an_unknown_denoiser_class_is_refused(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / embedded.WEIGHTS_NAME).write_bytes(b"")
    (folder / "scheduler_config.json").write_text("{}")
    (folder / "config.json").write_text('{"_class_name": "UNet3DConditionModel"}')
    monkeypatch.setattr(embedded, "ASSETS_DIR", tmp_path)
    with pytest.raises(ValueError, match="unknown denoiser class 'UNet3DConditionModel'"):
        load_embedded("mnist")


@pytest.mark.parametrize("name", ["mnist", "embedded:mnist-cond"])
def test_load_and_forward(name: str) -> None:
    short = name.removeprefix("embedded:")
    if not _shipped(short):
        pytest.skip(f"{short} weights not trained yet")
    model = load_embedded(name)
    unet = model.unet
    assert model.name == short and not unet.training
    assert all(p.dtype == torch.float32 for p in unet.parameters())
    cfg = unet.config
    assert cfg.sample_size == 32 and cfg.in_channels == cfg.out_channels == 1
    assert len(cfg.block_out_channels) == 3  # resolutions 32, 16, 8
    assert [b.startswith("Attn") for b in cfg.down_block_types] == [False, True, True]
    assert [b.startswith("Attn") for b in cfg.up_block_types] == [True, True, False]
    assert model.scheduler_config["num_train_timesteps"] == 1000
    assert model.scheduler_config["beta_schedule"] == "linear"
    assert model.scheduler_config["prediction_type"] == "epsilon"
    if short == "mnist-cond":
        assert (model.num_classes, model.null_class, cfg.num_class_embeds) == (10, 10, 11)
        labels = torch.tensor([3, model.null_class])
    else:
        assert model.num_classes is None and model.null_class is None and cfg.num_class_embeds is None
        labels = None
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        eps = unet(x, torch.tensor([10, 900]), class_labels=labels).sample
    assert eps.shape == (2, 1, 32, 32) and torch.isfinite(eps).all()
    # a trained epsilon-predictor at t=900 sees mostly noise: its prediction is close to x
    assert torch.nn.functional.cosine_similarity(eps[1].flatten(), x[1].flatten(), dim=0) > 0.8


def test_scheduler_helper_builds_ddim() -> None:
    if not _shipped("mnist"):
        pytest.skip("mnist weights not trained yet")
    from diffusers import DDIMScheduler

    scheduler = load_embedded("mnist").scheduler(DDIMScheduler)
    assert isinstance(scheduler, DDIMScheduler)
    assert scheduler.config.beta_end == pytest.approx(0.02)


def test_shipped_dit_predicts_noise() -> None:
    if not _shipped("mnist-dit"):
        pytest.skip("mnist-dit weights not trained yet")
    model = load_embedded("mnist-dit")
    cfg = model.unet.config
    assert (cfg.sample_size, cfg.in_channels, cfg.out_channels, cfg.patch_size) == (32, 1, 1, 4)
    assert (model.num_classes, model.null_class) == (10, 10)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        eps = model.unet(x, torch.tensor([10, 900]), class_labels=torch.tensor([3, 10])).sample
    assert eps.shape == (2, 1, 32, 32) and torch.isfinite(eps).all()
    assert torch.nn.functional.cosine_similarity(eps[1].flatten(), x[1].flatten(), dim=0) > 0.8
