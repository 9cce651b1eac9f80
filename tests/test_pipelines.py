"""diffusers pipelines with a quantized UNet: step tracking, calibration from the pipeline, save/load."""

import pytest
import torch
from conftest import make_unet
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler
from pipeline_folders import sd_pipeline

import adpdm
from adpdm.pipelines import StepTracker, record_pipeline, track_steps
from adpdm.ptq import CalibConfig
from adpdm.recon.reconstruct import ReconConfig

K = 4


def _pipe(kind: str):
    torch.manual_seed(0)
    if kind == "ddpm":
        return DDPMPipeline(unet=make_unet(), scheduler=DDPMScheduler(num_train_timesteps=1000))
    return DDIMPipeline(unet=make_unet(), scheduler=DDIMScheduler(num_train_timesteps=1000))


def _run(pipe, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(pipe(batch_size=2, num_inference_steps=K, generator=torch.Generator().manual_seed(seed),
                                output_type="np").images)  # fmt: skip


def _steps_seen(pipe) -> list:
    seen = []
    handle = pipe.unet.register_forward_pre_hook(lambda *_: seen.append(adpdm.current_step()))
    try:
        _run(pipe)
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_tracker_sets_the_step_of_every_unet_call(kind: str) -> None:
    pipe = _pipe(kind)
    assert set(_steps_seen(pipe)) == {None}
    track_steps(pipe)
    assert _steps_seen(pipe) == list(range(K))
    assert adpdm.current_step() is None  # nothing leaks out of the pipeline call


def test_tracker_rejects_a_timestep_outside_the_schedule() -> None:
    pipe = _pipe("ddim")
    tracker = StepTracker(pipe.unet, pipe.scheduler)
    pipe.scheduler.set_timesteps(K)
    assert tracker.step_of(pipe.scheduler.timesteps[2]) == 2
    with pytest.raises(ValueError, match="not in the scheduler"):
        tracker.step_of(7)
    with pytest.raises(ValueError, match="mixes timesteps"):
        tracker.step_of(torch.tensor([pipe.scheduler.timesteps[0], pipe.scheduler.timesteps[1]]))


def test_recording_from_a_pipeline_keys_every_row() -> None:
    pipe = _pipe("ddim")
    data = record_pipeline(pipe, K, num_samples=3, batch_size=2)
    assert len(data) == 3 * K and data.num_steps == K
    assert sorted(data.step.tolist()) == sorted(list(range(K)) * 3)
    assert sorted(set(data.sample.tolist())) == [0, 1, 2]
    assert (data.timestep[data.step == 0] == pipe.scheduler.timesteps[0]).all()


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_quantize_pipeline_in_place_then_save_and_load(tmp_path, kind: str) -> None:
    pipe = _pipe(kind)
    fp = _run(pipe)
    calib = CalibConfig(num_samples=3, calib_steps=2, signature_samples=2)
    recon = ReconConfig(iters=3, batch_size=4, capture_batch=8)
    qcfg = adpdm.QuantConfig.preset("w8a8", num_steps=K, groups=2)
    result = adpdm.quantize_pipeline(pipe, qcfg, "adpdm", calib=calib, recon=recon, progress=False)
    assert result.model is pipe.unet and adpdm.get_state(pipe.unet) == adpdm.QuantState.FROZEN
    q = _run(pipe)
    assert torch.isfinite(q).all() and (q - fp).abs().mean() < 0.25  # a random tiny UNet, 4 steps
    adpdm.save_quantized(pipe.unet, tmp_path)
    pipe.unet = adpdm.load_quantized(tmp_path)
    with pytest.raises(RuntimeError, match="step_context"):  # 2 groups: the steps must be known
        _run(pipe)
    track_steps(pipe)
    assert torch.equal(_run(pipe), q)


def test_pipeline_errors() -> None:
    with pytest.raises(ValueError, match="has no denoiser"):
        track_steps(object())
    pipe = _pipe("ddpm")
    with pytest.raises(ValueError, match="non-empty"):
        record_pipeline(pipe, K, prompts=[])
    with pytest.raises(ValueError, match="takes no prompts"):
        record_pipeline(pipe, K, prompts=["a cat"])
    pipe.unet = torch.nn.Conv2d(3, 3, 1)  # a denoiser that is no diffusers UNet
    with pytest.raises(ValueError, match="its denoiser is Conv2d"):
        adpdm.quantize_pipeline(pipe, adpdm.QuantConfig.preset("w8a8", num_steps=K), method="rtn")


def test_stable_diffusion_pipeline_records_both_branches_and_round_trips(tmp_path) -> None:
    pipe = sd_pipeline(tmp_path)
    prompts = ["a red cat", "a blue dog", "a tree"]

    def run():
        return torch.as_tensor(pipe(prompt=prompts[:2], num_inference_steps=K, guidance_scale=5.0, output_type="np",
                                    generator=torch.Generator().manual_seed(0)).images)  # fmt: skip

    data = record_pipeline(pipe, K, prompts=prompts, guidance_scale=5.0, batch_size=2)
    assert len(data) == 2 * 3 * K  # both guidance branches of 3 prompts at every step
    assert (data.branch == 0).sum() == (data.branch == 1).sum() == 3 * K
    assert data.cond["encoder_hidden_states"].shape == (len(data), 16, 16)
    calib = CalibConfig(num_samples=3, calib_steps=2, signature_samples=2)
    recon = ReconConfig(iters=2, batch_size=4, capture_batch=8)
    qcfg = adpdm.QuantConfig.preset("w8a8", num_steps=K, groups=2)
    adpdm.quantize_pipeline(pipe, qcfg, "adpdm", prompts=prompts, calib=calib, recon=recon,
                            guidance_scale=5.0, progress=False)  # fmt: skip
    q = run()
    assert torch.isfinite(q).all()
    adpdm.save_quantized(pipe.unet, tmp_path / "q")
    pipe.unet = adpdm.load_quantized(tmp_path / "q")
    track_steps(pipe)
    assert torch.equal(run(), q)
