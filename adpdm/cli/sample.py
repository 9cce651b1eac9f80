"""``adpdm sample``: draw a grid of samples from a full-precision or quantized model.

Samples use common random numbers (see :mod:`adpdm.sampling`): the same ``--seed`` gives the
same noise to every model, so grids of a full-precision and a quantized model compare image
by image (``--compare`` writes both side by side). Under ``accelerate launch --num_processes N``
the batches are spread over the processes and the first process writes the same grid.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch

from ..distributed import launched_state
from ..generate import check_conditioning, generate
from ..models.source import resolve_model
from ..sampling import SCHEDULERS, SamplerConfig, save_grid, side_by_side
from ..utils.resources import resolve_device
from .common import add_conditioning_arguments, add_model_arguments, conditioning

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``sample`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "sample",
        help="sample an image grid from a model or its quantized copy",
        description=(
            "Sample a PNG grid with common random numbers. For the class-conditional "
            "embedded:mnist-cond, classifier-free guidance usually helps: pass e.g. --guidance 2.0."
        ),
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--compare",
        action="store_true",
        help="with --quantized: write the FP and quantized grids side by side",
    )
    parser.add_argument("--num", type=int, default=64, help="number of samples (default 64)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the checkpoint's K, else 100)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="ddim", help="sampler (default ddim)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta in [0, 1] (default 0)")
    add_conditioning_arguments(parser, guidance_default="1.0 = off, 7.5 for text; e.g. 2.0 for embedded:mnist-cond")
    parser.add_argument("--seed", type=int, default=0, help="seed of the common random numbers (default 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64)")
    parser.add_argument("--device", help="torch device (default cuda when available, else cpu)")
    parser.add_argument("--out", default="grid.png", help="output PNG (default grid.png)")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="run the quantized model in torch (default) or its ONNX export (--onnx DIR) in ONNX Runtime",
    )
    parser.add_argument("--onnx", metavar="DIR", help="with --backend onnxruntime: a folder written by `adpdm export`")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.set_defaults(func=run)
    return parser


def _export_steps(folder: str, steps: int | None) -> int | None:
    """The K of an export with several timestep groups (its step -> graph table), checked against ``steps``."""
    from ..deploy.runtime import read_manifest

    table = read_manifest(folder)["step_to_graph"]
    if not table:
        return steps  # one graph: any schedule
    if steps is not None and steps != len(table):
        raise ValueError(f"{folder} was exported for K = {len(table)} sampling steps; pass --steps {len(table)} or "
                         "leave --steps out")  # fmt: skip
    return len(table)


def run(args: argparse.Namespace) -> int:
    """Sample ``args.num`` images and write the grid to ``args.out``."""
    onnx = args.backend == "onnxruntime"
    if onnx and not args.onnx:
        raise ValueError("--backend onnxruntime needs --onnx DIR (a folder written by `adpdm export`)")
    if args.onnx and not onnx:
        raise ValueError("--onnx DIR needs --backend onnxruntime")
    if args.compare and not (args.quantized or onnx):
        raise ValueError("--compare needs --quantized DIR or --backend onnxruntime")
    state = launched_state()
    if onnx and state is not None:
        raise ValueError("--backend onnxruntime runs in one process: launch without accelerate")
    device = torch.device("cpu") if onnx else resolve_device(args.device, state)  # ORT returns CPU tensors
    steps = args.steps
    if onnx and not args.quantized:
        steps = _export_steps(args.onnx, steps)
    resolved = resolve_model(args.model, args.quantized, steps, args.null_class)
    model = resolved.model
    guidance = args.guidance if args.guidance is not None else (1.0 if model.kind != "text" else 7.5)
    cfg = SamplerConfig(
        scheduler=args.scheduler,
        num_steps=resolved.steps,
        eta=args.eta,
        guidance_scale=guidance,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    cond = conditioning(args)
    check_conditioning(model, cond, cfg)  # before any sampling
    unets = {model.spec: model.unet}
    if args.quantized:
        from .. import load_quantized

        quantized = {f"quantized ({args.quantized})": load_quantized(args.quantized, device=device)}
        unets = {**unets, **quantized} if args.compare else quantized
    if onnx:
        from ..deploy import OnnxDenoiser, RuntimeOptions

        exported = {f"onnxruntime ({args.onnx})": OnnxDenoiser(args.onnx, RuntimeOptions(threads=args.threads))}
        unets = {**unets, **exported} if args.compare else exported
    grids = {}
    for name, unet in unets.items():
        logger.info("sampling %d images from %s", args.num, name)
        unet = unet.to(device).eval() if isinstance(unet, torch.nn.Module) else unet
        grids[name] = generate(model, unet, args.num, cfg, cond, state=state).images
    if state is not None and not state.is_main_process:
        return 0
    path = side_by_side(grids, args.out) if args.compare else save_grid(next(iter(grids.values())), args.out)
    logger.info("wrote %s", path)
    return 0
