"""``adpdm quantize``: calibrate a model with one registered method and save the checkpoint."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..calib.timesteps import STRATEGIES
from ..checkpoint import save_quantized
from ..config import QuantConfig, parse_layer_bits
from ..generate import Conditioning, check_conditioning, read_prompts
from ..methods import METHODS, get_method
from ..models.loading import load_model
from ..models.source import DEFAULT_MODEL, ModelSource
from ..ptq import CalibConfig, run_ptq
from ..recon.reconstruct import ReconConfig
from ..sampling import SamplerConfig
from ..utils.resources import resolve_device
from .common import add_model_arguments

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "quantize",
        help="quantize a model data-free with a registered method",
        description="Record calibration data from the FP sampler, calibrate with METHOD, save the frozen "
        "model and DIR/report.json.",
    )
    add_model_arguments(parser, quantized=False)
    parser.add_argument("--prompts", metavar="FILE", help="text prompts, one per line (text-conditioned pipelines)")
    parser.add_argument("--method", default="adpdm", choices=sorted(METHODS), help="default adpdm")
    parser.add_argument("--preset", default="w4a8", choices=sorted(QuantConfig.PRESETS), help="default w4a8")
    parser.add_argument("--groups", type=int, help="timestep groups G for adpdm (default 4)")
    parser.add_argument("--timesteps", choices=STRATEGIES, help="override the method's calibration steps")
    parser.add_argument("--steps", type=int, default=100, help="DDIM sampling steps K (default 100)")
    parser.add_argument("--guidance", type=float,
                        help="guidance scale of the calibration sampler (default 1.0; 7.5 text)")  # fmt: skip
    parser.add_argument("--num-samples", type=int, default=32, help="calibration trajectories (default 32)")
    parser.add_argument("--calib-steps", type=int, help="calibration steps selected (default min(10, K))")
    parser.add_argument("--iters", type=int, default=200, help="reconstruction iterations per block (default 200)")
    parser.add_argument("--batch-size", type=int, default=32, help="reconstruction batch size (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of noise and row sampling (default 0)")
    parser.add_argument("--first-last-bits", type=int, help="keep conv_in / conv_out at this bit width")
    parser.add_argument("--layer-bits", metavar="PATTERN=WnAm,...", default="",
                        help="other bit widths for named layers, e.g. 'mid_block.*=W8A8,conv_out=W8A16': fnmatch "
                        "patterns of module names, the first match wins (over --first-last-bits and --preset), A16 "
                        "leaves inputs unquantized; an attention takes Q/K/V bits from a pattern matching its name "
                        "or all its children (NAME.*); a pattern matching no layer is an error")  # fmt: skip
    parser.add_argument("--device", help="torch device (default cuda when available, else cpu)")
    parser.add_argument("--out", required=True, help="output folder (checkpoint and report.json)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    # every setting is validated before any work starts
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.resume:
        raise ValueError(f"--out {out} already holds files (another run?): choose a new folder, or pass --resume "
                         "to continue an interrupted run there")  # fmt: skip
    get_method(args.method)
    qcfg = QuantConfig.preset(args.preset, num_steps=args.steps, first_last_bits=args.first_last_bits,
                              layer_bits=parse_layer_bits(args.layer_bits))  # fmt: skip
    if args.groups is not None and not 1 <= args.groups <= args.steps:
        raise ValueError(f"--groups must be in [1, {args.steps}], got {args.groups}")
    # text models (the only ones that take prompts) default to the guidance of their pipelines
    guidance = args.guidance if args.guidance is not None else (7.5 if args.prompts else 1.0)
    sampler = SamplerConfig(num_steps=args.steps, guidance_scale=guidance, seed=args.seed, batch_size=32)
    calib_steps = args.calib_steps if args.calib_steps is not None else min(10, args.steps)
    calib = CalibConfig(num_samples=args.num_samples, calib_steps=calib_steps, timesteps=args.timesteps,
                        sampler=sampler, seed=args.seed)  # fmt: skip
    prompts = read_prompts(args.prompts) if args.prompts else None
    model = load_model(args.model or DEFAULT_MODEL, args.null_class)
    check_conditioning(model, Conditioning(prompts=prompts), sampler)
    recon = ReconConfig(iters=args.iters, batch_size=args.batch_size, seed=args.seed)
    device = resolve_device(args.device)
    source = ModelSource.of(model, args.steps)  # before the UNet is quantized in place
    if model.kind == "text":
        result = _quantize_pipeline(model, args, qcfg, calib, recon, prompts, guidance, out, device)
    else:
        result = run_ptq(
            model.unet.to(device), model.scheduler_config, args.method, qcfg, calib, recon, groups=args.groups,
            num_classes=model.num_classes, null_class=model.null_class, out_dir=out, resume=args.resume,
            device=device,
        )  # fmt: skip
    save_quantized(result.model, out, source=source)
    r = result.report
    logger.info("%s %s: steps %s, partition %s, %.1fs, peak %.0f MiB -> %s", r["method"], args.preset,
                r["selected_steps"], r["partition"], r["calib_seconds"], r["peak_mem_mb"], out)  # fmt: skip
    return 0


def _quantize_pipeline(model, args, qcfg, calib, recon, prompts, guidance, out: Path, device):  # noqa: ANN001, ANN202
    """A text-to-image pipeline: calibration data recorded from the pipeline itself, on DDIM."""
    from diffusers import DDIMScheduler

    from ..pipelines import quantize_pipeline

    pipe = model.pipeline.to(device)
    pipe.scheduler = DDIMScheduler.from_config(model.scheduler_config)  # the schedule `adpdm sample` uses
    return quantize_pipeline(pipe, qcfg, args.method, prompts, calib, recon, groups=args.groups,
                             guidance_scale=guidance, out_dir=str(out))  # fmt: skip
