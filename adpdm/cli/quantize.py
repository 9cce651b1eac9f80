"""``adpdm quantize``: calibrate a model with one registered method and save the checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from ..checkpoint import save_quantized
from ..config import QuantConfig, parse_layer_bits
from ..generate import Conditioning, check_conditioning, read_prompts
from ..methods import METHODS, MethodSpec, RecipeConflict, get_method
from ..models.loading import load_model
from ..models.source import DEFAULT_MODEL, ModelSource
from ..ptq import CalibConfig, run_ptq, settings_from_report
from ..recon.reconstruct import BUDGETS, ReconConfig
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
    parser.add_argument("--method", choices=sorted(METHODS), help="default adpdm")
    parser.add_argument("--preset", choices=QuantConfig.preset_names(),
                        help="bit widths, default w4a8; first and last layer stay at 8 bits (the field's protocol) "
                        "unless the preset ends in -strict")  # fmt: skip
    parser.add_argument("--groups", type=int, help="timestep groups G, for the methods that take them (default 4)")
    parser.add_argument("--steps", type=int, help="DDIM sampling steps K (default 100)")
    parser.add_argument("--guidance", type=float,
                        help="guidance scale of the calibration sampler (default 1.0; 7.5 text)")  # fmt: skip
    parser.add_argument("--num-samples", type=int, help="calibration trajectories (default 32)")
    parser.add_argument("--calib-steps", type=int, help="calibration steps selected (default min(10, K))")
    parser.add_argument(
        "--budget",
        choices=list(BUDGETS),
        help="reconstruction budget: fast (50 iterations per block), default (200), thorough (1000)",
    )
    parser.add_argument("--iters", type=int, help="reconstruction iterations per block (instead of --budget)")
    parser.add_argument("--batch-size", type=int, help="reconstruction batch size (default 32)")
    parser.add_argument("--seed", type=int, help="seed of noise and row sampling (default 0)")
    parser.add_argument("--first-last-bits", type=_bits_or_none, metavar="N|none",
                        help="weight bits of conv_in / conv_out (default 8; none: like the other layers)")  # fmt: skip
    parser.add_argument("--layer-bits", metavar="PATTERN=WnAm,...",
                        help="other bit widths for named layers, e.g. 'mid_block.*=W8A8,conv_out=W8A16': fnmatch "
                        "patterns of module names, the first match wins (over --first-last-bits and --preset), A16 "
                        "leaves inputs unquantized; an attention takes Q/K/V bits from a pattern matching its name "
                        "or all its children (NAME.*); a pattern matching no layer is an error")  # fmt: skip
    parser.add_argument("--smoothing", action="store_true", default=None,
                        help="smooth each layer's input into its weights (SmoothQuant), strength chosen per layer "
                        "on the calibration rows")  # fmt: skip
    parser.add_argument("--recipe", metavar="REPORT",
                        help="run again with the method, bit widths, calibration and reconstruction settings "
                        "of a report.json written by `adpdm quantize` (the flags above may not be given)")  # fmt: skip
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
    spec, qcfg, calib, recon = _settings(args)
    sampler = calib.sampler
    prompts = read_prompts(args.prompts) if args.prompts else None
    model = load_model(args.model or DEFAULT_MODEL, args.null_class)
    check_conditioning(model, Conditioning(prompts=prompts), sampler)
    device = resolve_device(args.device)
    source = ModelSource.of(model, qcfg.num_steps)  # before the UNet is quantized in place
    if model.kind == "text":
        result = _quantize_pipeline(model, spec, qcfg, calib, recon, prompts, out, device)
    else:
        result = run_ptq(
            model.unet.to(device), model.scheduler_config, spec, qcfg, calib, recon,
            num_classes=model.num_classes, null_class=model.null_class, out_dir=out, resume=args.resume,
            device=device,
        )  # fmt: skip
    save_quantized(result.model, out, source=source)
    r = result.report
    logger.info("%s W%dA%d: steps %s, partition %s, %.1fs, peak %.0f MiB -> %s", r["method"], qcfg.wbits, qcfg.abits,
                r["selected_steps"], r["partition"], r["calib_seconds"], r["peak_mem_mb"], out)  # fmt: skip
    return 0


def _quantize_pipeline(model, spec, qcfg, calib, recon, prompts, out: Path, device):  # noqa: ANN001, ANN202
    """A text-to-image pipeline: calibration data recorded from the pipeline itself, on DDIM."""
    from diffusers import DDIMScheduler

    from ..pipelines import quantize_pipeline

    pipe = model.pipeline.to(device)
    pipe.scheduler = DDIMScheduler.from_config(model.scheduler_config)  # the schedule `adpdm sample` uses
    return quantize_pipeline(pipe, qcfg, spec, prompts, calib, recon, guidance_scale=calib.sampler.guidance_scale,
                             out_dir=str(out))  # fmt: skip


_RECIPE_FLAGS = ("method", "preset", "groups", "steps", "guidance", "num_samples", "calib_steps", "budget", "iters",
                 "batch_size", "seed", "first_last_bits", "layer_bits", "smoothing")  # fmt: skip


def _bits_or_none(text: str) -> int | str:
    if text.lower() == "none":
        return "none"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a bit width (2-8) or 'none', got {text!r}") from None


def _settings(args: argparse.Namespace) -> tuple[MethodSpec, QuantConfig, CalibConfig, ReconConfig]:
    """The method, quantization, calibration and reconstruction settings, validated before any work."""
    if args.recipe:
        given = [f"--{name.replace('_', '-')}" for name in _RECIPE_FLAGS if getattr(args, name) is not None]
        if given:
            raise ValueError(f"--recipe sets the method and every setting; drop {', '.join(given)}")
        try:
            report = json.loads(Path(args.recipe).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"--recipe {args.recipe}: cannot read a report.json ({err})") from err
        spec, qcfg, calib, recon = settings_from_report(report)
        spec.quant_config(qcfg)  # a recipe that conflicts with itself is refused here, not after sampling
        return spec, qcfg, calib, recon or ReconConfig()
    spec = get_method(args.method or "adpdm")
    steps = args.steps if args.steps is not None else 100
    fields: dict[str, Any] = {"num_steps": steps, "groups": args.groups}
    if args.first_last_bits is not None:
        fields["first_last_bits"] = None if args.first_last_bits == "none" else args.first_last_bits
    if args.layer_bits:
        fields["layer_bits"] = parse_layer_bits(args.layer_bits)
    if args.smoothing:
        fields["smoothing"] = True
    qcfg = QuantConfig.preset(args.preset or "w4a8", **fields)
    try:  # e.g. --groups with a method that has one group: an error now, not after sampling
        spec.quant_config(qcfg)
    except RecipeConflict as err:
        if err.field != "groups":
            raise
        raise RecipeConflict(err.method, err.field, err.fixed, err.given, err.allowed, "drop --groups") from None
    seed = args.seed if args.seed is not None else 0
    # text models (the only ones that take prompts) default to the guidance of their pipelines
    guidance = args.guidance if args.guidance is not None else (7.5 if args.prompts else 1.0)
    sampler = SamplerConfig(num_steps=steps, guidance_scale=guidance, seed=seed, batch_size=32)
    calib_steps = args.calib_steps if args.calib_steps is not None else min(10, steps)
    calib = CalibConfig(num_samples=args.num_samples or 32, calib_steps=calib_steps, sampler=sampler, seed=seed)
    if args.budget is not None and args.iters is not None:
        raise ValueError("give --budget or --iters, not both (--iters sets the iterations of a budget of your own)")
    recon = ReconConfig.budget(args.budget or "default", batch_size=args.batch_size or 32, seed=seed)
    if args.iters is not None:
        recon = dataclasses.replace(recon, iters=args.iters)
    return spec, qcfg, calib, recon
