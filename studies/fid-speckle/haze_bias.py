"""Is the background haze a shift or noise? And does a data-free output-bias correction remove it?

The quantized and the FP model sample the same validation noise (seed 7). On the far background (pixels 3 or
more away from the FP sample's ink) the final samples *before* the clip to [-1, 1] are compared: the mean of
quant - FP (a shift, which the clip keeps when it points up) against its spread (noise, which the clip halves).

The correction: on the calibration draw's own FP trajectories (seed = draw, never the validation noise), the
mean of eps_FP - eps_quant per sampling step and channel; added to the quantized model's output at that step.
Usage: PYTHONPATH=. .venv/bin/python studies/fid-speckle/haze_bias.py [MODEL] [PRESET] [METHODS] [num]
"""

import copy
import logging
import sys

import torch
from haze import bench_calibration, faint_share, far_background
from torch import nn

import adpdm.sampling as sampling_module
from adpdm.config import QuantConfig
from adpdm.eval.evaluate import EvalConfig, Evaluator
from adpdm.eval.metrics import background_haze, psnr
from adpdm.models.loading import load_model
from adpdm.ptq import run_ptq
from adpdm.sampling import SamplerConfig, make_scheduler, sample

logging.basicConfig(level=logging.WARNING)
SPEC = sys.argv[1] if len(sys.argv) > 1 else "embedded:mnist-cond"
PRESET = sys.argv[2] if len(sys.argv) > 2 else "w8a8"
METHODS = (sys.argv[3] if len(sys.argv) > 3 else "rtn,adpdm").split(",")
N = int(sys.argv[4]) if len(sys.argv) > 4 else 128
K, DRAW = 20, 1


class Recorder:
    """Wraps ``make_scheduler`` so the sampler's last DDIM step is kept before the final clip."""

    def __init__(self) -> None:
        self.raw: list[torch.Tensor] = []

    def __call__(self, *args, **kwargs):
        scheduler = make_scheduler(*args, **kwargs)
        step, last = scheduler.step, scheduler.timesteps[-1]

        def recording_step(eps, t, x, **kw):
            out = step(eps, t, x, **kw)
            if int(t) == int(last):
                self.raw.append(out.prev_sample.float().cpu())
            return out

        scheduler.step = recording_step
        return scheduler


def sample_raw(unet: nn.Module, cfg: SamplerConfig, callback=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Final samples clipped (as the sampler returns them) and before the clip."""
    recorder = Recorder()
    sampling_module.make_scheduler = recorder
    try:
        images = sample(unet, sched, N, cfg, progress=False, callback=callback, **classes).images
    finally:
        sampling_module.make_scheduler = make_scheduler
    return images, torch.cat(recorder.raw)


class StepBias(nn.Module):
    """The quantized denoiser with a per-step, per-channel offset added to its output."""

    def __init__(self, quant: nn.Module, bias: torch.Tensor) -> None:
        super().__init__()
        self.quant, self.bias, self.step = quant, bias, 0
        self.config = quant.config

    def set_step(self, k: int, t, inputs) -> None:
        self.step = k

    def forward(self, *args, **kwargs):
        out = self.quant(*args, **kwargs)
        sample_out = out.sample if hasattr(out, "sample") else out[0]
        corrected = sample_out + self.bias[self.step].view(1, -1, 1, 1).to(sample_out)
        return type(out)(sample=corrected) if hasattr(out, "sample") else (corrected,)


class Pair(nn.Module):
    """Runs FP and quantized denoisers on the FP trajectory; accumulates eps_FP - eps_quant per step."""

    def __init__(self, fp: nn.Module, quant: nn.Module, channels: int) -> None:
        super().__init__()
        self.fp, self.quant, self.step = fp, quant, 0
        self.config = fp.config
        self.sum = torch.zeros(K, channels)
        self.count = torch.zeros(K)

    def set_step(self, k: int, t, inputs) -> None:
        self.step = k

    def forward(self, *args, **kwargs):
        out = self.fp(*args, **kwargs)
        q = self.quant(*args, **kwargs)
        diff = (out.sample - q.sample).float()  # (B, C, H, W), or (2B, ...) [cond, uncond] under guidance
        if guidance != 1.0:  # the error of the guided eps the sampler uses
            d_c, d_u = diff.chunk(2)
            diff = d_u + guidance * (d_c - d_u)
        self.sum[self.step] += diff.mean(dim=(2, 3)).sum(0).cpu()
        self.count[self.step] += diff.shape[0]
        return out


model = load_model(SPEC, None)
sched = model.scheduler_config
guidance = model.default_guidance if model.num_classes else 1.0
classes = dict(num_classes=model.num_classes, null_class=model.null_class)
val = SamplerConfig(num_steps=K, seed=7, guidance_scale=guidance)
calib_sampler = SamplerConfig(num_steps=K, seed=DRAW, guidance_scale=guidance)
calib, recon = bench_calibration(DRAW, K, guidance)
ev = Evaluator(EvalConfig(ref_num=2000), progress=False)
fp, fp_raw = sample_raw(model.unet, val)
background = far_background(fp)
channels = fp.shape[1]
print(
    f"{SPEC} {PRESET}: FP background before the clip: mean {float(fp_raw[background].mean()):+.4f} "
    f"std {float(fp_raw[background].std()):.4f}; share above -1 {float((fp_raw[background] > -1).float().mean()):.3f}; "
    f"faint {faint_share(fp):.4f} fid_data {ev.evaluate(fp).fid_data:.1f}",
    flush=True,
)
for method in METHODS:
    quant = copy.deepcopy(model.unet)
    run_ptq(quant, sched, method, QuantConfig.preset(PRESET, num_steps=K), calib, recon, progress=False, **classes)
    pair = Pair(model.unet, quant, channels)
    sample(pair, sched, N, calib_sampler, progress=False, callback=pair.set_step, **classes)
    bias = pair.sum / pair.count.clamp(min=1).unsqueeze(1)  # (K, C): mean eps_FP - eps_quant per step
    for name, net in (("plain", quant), ("bias-corrected", StepBias(quant, bias))):
        x, raw = sample_raw(net, val, callback=getattr(net, "set_step", None))
        d = (raw - fp_raw)[background]
        per_image = ((raw - fp_raw) * background).sum(dim=(1, 2, 3)) / background.sum(dim=(1, 2, 3)).clamp(min=1)
        print(
            f"{SPEC} {PRESET} {method} {name}: psnr {float(psnr(x, fp).clamp(max=100).mean()):.2f} "
            f"haze {background_haze(x, fp):.4f} faint {faint_share(x):.4f} fid_data {ev.evaluate(x).fid_data:.1f} | "
            f"background quant-FP before the clip: mean {float(d.mean()):+.4f} std {float(d.std()):.4f} "
            f"per-image mean spread {float(per_image.std()):.4f}",
            flush=True,
        )
    print(f"  {method} calibration-draw bias eps_FP - eps_quant by step (channel mean): "
          + " ".join(f"{float(b):+.4f}" for b in bias.mean(1)), flush=True)  # fmt: skip
