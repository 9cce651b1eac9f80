"""Sampling: common random numbers, the step context, guidance, grids and the CLI."""

from __future__ import annotations

import copy
import sys
import types

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from PIL import Image

import adpdm
from adpdm.cli.main import main
from adpdm.sampling import (
    SamplerConfig,
    ddpm_step,
    eps_sensitivity,
    initial_noise,
    make_grid,
    make_scheduler,
    sample,
    save_grid,
    side_by_side,
)

STEPS = 4
NULL_CLASS = 10


def _tiny_unet(num_class_embeds: int | None = None) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        num_class_embeds=num_class_embeds,
    ).eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and far faster when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def unet() -> UNet2DModel:
    return _tiny_unet()


@pytest.fixture(scope="module")
def cond_unet() -> UNet2DModel:
    return _tiny_unet(num_class_embeds=11)


@pytest.fixture(scope="module")
def scheduler_config() -> dict:
    return dict(DDPMScheduler(num_train_timesteps=1000).config)


class Recorder(torch.nn.Module):
    """Wraps a denoiser and records the step context, batch size and labels of every call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.calls: list[tuple[object, int, torch.Tensor | None]] = []

    def forward(self, sample, timestep, class_labels=None):
        labels = None if class_labels is None else class_labels.clone()
        self.calls.append((adpdm.current_step(), sample.shape[0], labels))
        return self.inner(sample, timestep, class_labels=class_labels)


def _run(unet, scheduler_config, num, progress=False, **kwargs) -> torch.Tensor:
    labels = {k: kwargs.pop(k) for k in ("num_classes", "null_class", "labels") if k in kwargs}
    cfg = SamplerConfig(num_steps=STEPS, **kwargs)
    return sample(unet, scheduler_config, num, cfg, progress=progress, **labels).images


@pytest.mark.parametrize("options", [{"scheduler": "ddim"}, {"scheduler": "ddim", "eta": 1.0}, {"scheduler": "ddpm"}])
def test_samples_do_not_depend_on_batch_size(unet, scheduler_config, options):
    small = _run(unet, scheduler_config, 5, batch_size=2, **options)
    large = _run(unet, scheduler_config, 5, batch_size=5, **options)
    torch.testing.assert_close(small, large, atol=1e-5, rtol=0)
    first = _run(unet, scheduler_config, 3, batch_size=3, **options)
    torch.testing.assert_close(first, large[:3], atol=1e-5, rtol=0)


def test_noise_is_keyed_by_sample_index():
    torch.testing.assert_close(initial_noise(6, (1, 4, 4), seed=3)[2:5], initial_noise(3, (1, 4, 4), 3, start=2))
    assert not torch.equal(initial_noise(1, (1, 4, 4), 3), initial_noise(1, (1, 4, 4), 4))


@pytest.mark.parametrize("options", [{}, {"variance_type": "fixed_large"}, {"prediction_type": "v_prediction"}])
def test_ddpm_step_matches_diffusers(scheduler_config, options):
    scheduler = make_scheduler({**scheduler_config, **options}, SamplerConfig(scheduler="ddpm", num_steps=10))
    x, eps = torch.randn(2, 3, 1, 4, 4).unbind(0)
    for t in scheduler.timesteps[[0, 5, -1]]:
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        expected = scheduler.step(eps, t, x, generator=torch.Generator().manual_seed(1)).prev_sample
        torch.testing.assert_close(ddpm_step(scheduler, eps, t, x, noise), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
def test_eps_sensitivity_is_the_coefficient_of_eps_in_each_update(scheduler_config, name):
    cfg = SamplerConfig(scheduler=name, num_steps=10)
    sens = eps_sensitivity(scheduler_config, cfg)
    scheduler = make_scheduler(scheduler_config, cfg)
    alphas = scheduler.alphas_cumprod.double()
    assert sens.shape == (10,)
    if name == "ddim":  # x' = sqrt(a') x0 + sqrt(1 - a') eps, x0 = (x - sqrt(1 - a) eps) / sqrt(a)
        for k, t in enumerate(scheduler.timesteps.tolist()):
            a, a_prev = alphas[t], alphas[t - 100] if t >= 100 else scheduler.final_alpha_cumprod.double()
            expected = abs((1 - a_prev).sqrt() - a_prev.sqrt() * (1 - a).sqrt() / a.sqrt())
            assert sens[k] == pytest.approx(float(expected), rel=1e-4)
    # an output error matters far less at the last (least noisy) step than at the first
    assert sens[-1] < 0.1 * sens[0]


def test_step_context_is_set_on_every_call(unet, scheduler_config):
    recorder = Recorder(unet)
    _run(recorder, scheduler_config, 5, batch_size=3)
    assert [step for step, _, _ in recorder.calls] == list(range(STEPS)) * 2
    assert [batch for _, batch, _ in recorder.calls] == [3] * STEPS + [2] * STEPS
    assert all(labels is None for _, _, labels in recorder.calls)


def test_guidance_runs_both_branches_in_one_call(cond_unet, scheduler_config):
    recorder = Recorder(cond_unet)
    out = sample(
        recorder,
        scheduler_config,
        4,
        SamplerConfig(num_steps=STEPS, guidance_scale=2.0),
        labels=[3, 7],
        num_classes=10,
        null_class=NULL_CLASS,
        progress=False,
    )
    assert out.labels.tolist() == [3, 7, 3, 7]
    assert [step for step, _, _ in recorder.calls] == list(range(STEPS))
    for _, batch, labels in recorder.calls:
        assert batch == 8
        assert labels.tolist() == [3, 7, 3, 7] + [NULL_CLASS] * 4


def test_no_guidance_runs_only_the_conditional_branch(cond_unet, scheduler_config):
    recorder = Recorder(cond_unet)
    out = _run(recorder, scheduler_config, 12, batch_size=12, num_classes=10, null_class=NULL_CLASS)
    assert out.shape == (12, 1, 16, 16)
    for _, batch, labels in recorder.calls:
        assert batch == 12
        assert labels.tolist() == [i % 10 for i in range(12)]


def test_guidance_combines_branches(cond_unet, scheduler_config):
    """s = 0 is the unconditional model alone: the same as sampling with every label set to null."""
    kwargs = {"num_classes": 11, "null_class": NULL_CLASS}
    guided = _run(cond_unet, scheduler_config, 2, guidance_scale=0.0, labels=[1, 2], **kwargs)
    uncond = _run(cond_unet, scheduler_config, 2, labels=[NULL_CLASS], **kwargs)
    torch.testing.assert_close(guided, uncond, atol=1e-5, rtol=0)


def test_callback_sees_the_denoiser_inputs(unet, scheduler_config):
    seen = []
    cfg = SamplerConfig(num_steps=STEPS)
    sample(unet, scheduler_config, 2, cfg, progress=False, callback=lambda k, t, inp: seen.append((k, inp)))
    assert [k for k, _ in seen] == list(range(STEPS))
    torch.testing.assert_close(seen[0][1].sample, initial_noise(2, (1, 16, 16), 0))
    assert seen[0][1].timestep.dim() == 0 and seen[0][1].class_labels is None


def test_output_range_shape_and_seed(unet, scheduler_config):
    a = _run(unet, scheduler_config, 3, progress=True)
    b = _run(unet, scheduler_config, 3, seed=1)
    assert a.shape == (3, 1, 16, 16) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert (a - b).abs().max() > 0.1


@pytest.mark.parametrize(
    "bad",
    [
        {"scheduler": "euler"},
        {"num_steps": 0},
        {"eta": 1.5},
        {"scheduler": "ddpm", "eta": 0.5},
        {"guidance_scale": -1.0},
        {"batch_size": 0},
        {"seed": -1},
    ],
)
def test_invalid_config(bad):
    field = next(iter(bad)) if len(bad) == 1 else "eta"
    with pytest.raises(ValueError, match=field):
        SamplerConfig(**bad)


def test_invalid_sampling_requests(unet, cond_unet, scheduler_config):
    with pytest.raises(ValueError, match="conditional"):
        _run(unet, scheduler_config, 2, guidance_scale=2.0)
    with pytest.raises(ValueError, match="labels"):
        _run(cond_unet, scheduler_config, 2, labels=[10], num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        _run(unet, scheduler_config, 2, labels=[1])


def test_make_grid_layout():
    images = torch.full((5, 1, 4, 6), -1.0)
    images[4] = 1.0
    grid = make_grid(images, nrow=3, padding=1)
    assert grid.shape == (2 * 5 + 1, 3 * 7 + 1, 1) and grid.dtype == np.uint8
    assert grid[1, 1, 0] == 0 and grid[0, 0, 0] == 255
    assert grid[6:10, 8:14].min() == 255  # the 5th image (row 1, column 1) is white
    assert grid[6:10, 15:21].min() == 255  # the empty cell stays padding


def test_save_grid_and_side_by_side(tmp_path):
    images = torch.rand(6, 3, 8, 8) * 2 - 1
    path = save_grid(images, tmp_path / "grid.png", nrow=3)
    with Image.open(path) as image:
        assert image.size == (3 * 10 + 2, 2 * 10 + 2) and image.mode == "RGB"
    path = side_by_side({"fp32": images[:, :1], "w4a8": images[:, :1]}, tmp_path / "cmp.png", nrow=3)
    with Image.open(path) as image:
        assert image.width > 2 * 32 and image.height > 22


def test_cli_writes_png(monkeypatch, tmp_path, cond_unet, scheduler_config):
    names = []

    def load_embedded(name):
        names.append(name)
        return types.SimpleNamespace(
            name=name,
            unet=cond_unet,
            scheduler_config=scheduler_config,
            num_classes=10,
            null_class=NULL_CLASS,
        )

    monkeypatch.setitem(sys.modules, "adpdm.embedded", types.SimpleNamespace(load_embedded=load_embedded))
    out = tmp_path / "grid.png"
    argv = ["sample", "--model", "embedded:mnist-cond", "--num", "4", "--steps", "2", "--guidance", "2.0"]
    assert main([*argv, "--labels", "1,2", "--device", "cpu", "--out", str(out)]) == 0
    assert names == ["mnist-cond"]
    with Image.open(out) as image:
        assert image.size == (2 * 18 + 2, 2 * 18 + 2)
    assert main(["sample", "--model", "hub:foo", "--out", str(out)]) == 2


def test_cli_compare_writes_side_by_side(monkeypatch, tmp_path, unet, scheduler_config):
    model = types.SimpleNamespace(
        name="mnist", unet=unet, scheduler_config=scheduler_config, num_classes=None, null_class=None
    )
    load = types.SimpleNamespace(load_embedded=lambda name: copy.deepcopy(model))  # a fresh copy per load
    monkeypatch.setitem(sys.modules, "adpdm.embedded", load)
    q = tmp_path / "q"
    quick = ["--num-samples", "2", "--calib-steps", "1", "--iters", "1", "--batch-size", "4"]
    assert main(["quantize", "--method", "rtn", "--steps", "2", "--device", "cpu", "--out", str(q), *quick]) == 0
    out = tmp_path / "cmp.png"
    argv = ["sample", "--num", "4", "--quantized", str(q), "--compare"]
    assert main([*argv, "--device", "cpu", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.width > 2 * (2 * 18 + 2) and image.mode == "RGB"
