"""The whole pipeline on a CUDA device: quantize, sample, save and load (skipped without a GPU)."""

import pytest
import torch
from conftest import make_unet
from diffusers import DDPMScheduler

import adpdm
from adpdm.checkpoint import load_quantized, save_quantized
from adpdm.ptq import CalibConfig, run_ptq
from adpdm.recon.reconstruct import ReconConfig
from adpdm.sampling import SamplerConfig, sample

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SCHED = dict(DDPMScheduler(num_train_timesteps=1000).config)
K = 4


def _run(method: str, device: str):
    torch.manual_seed(0)
    unet = make_unet()
    sampler = SamplerConfig(num_steps=K, batch_size=4)
    calib = CalibConfig(num_samples=3, calib_steps=2, sampler=sampler, signature_samples=2)
    recon = ReconConfig(iters=4, batch_size=4, capture_batch=8)
    qcfg = adpdm.QuantConfig.preset("w4a8", num_steps=K, groups=2 if method == "adpdm" else None)
    return run_ptq(unet, SCHED, method, qcfg, calib, recon, device=device, progress=False).model


@pytest.mark.parametrize("method", ["rtn", "qdiffusion", "adpdm"])
def test_quantize_and_sample_on_cuda(method: str) -> None:
    model = _run(method, "cuda")
    assert all(t.device.type == "cuda" for t in [*model.parameters(), *model.buffers()])
    out = sample(model, SCHED, 4, SamplerConfig(num_steps=K), progress=False).images
    assert torch.isfinite(out).all()


def test_checkpoint_round_trip_on_cuda(tmp_path) -> None:
    model = _run("adpdm", "cuda")
    save_quantized(model, tmp_path)
    loaded = load_quantized(tmp_path).to("cuda")
    x, t = torch.randn(2, 1, 16, 16, device="cuda"), torch.tensor([500, 20], device="cuda")
    with adpdm.step_context(torch.tensor([0, K - 1], device="cuda")):
        assert torch.equal(model(x, t).sample, loaded(x, t).sample)


def test_rtn_agrees_across_devices() -> None:
    cpu, gpu = _run("rtn", "cpu"), _run("rtn", "cuda")
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([500, 20])
    with adpdm.step_context(1):
        a = cpu(x, t).sample.flatten()
        b = gpu(x.cuda(), t.cuda()).sample.cpu().flatten()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.999
