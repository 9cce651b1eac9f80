"""``adpdm export``: write a frozen quantized model as ONNX QDQ graphs (one per timestep group).

The convolutions get 8-bit output quantizers calibrated on a few trajectories of the frozen
model's own sampler (the checkpoint's model gives the scheduler), so ONNX Runtime runs them as int8
``QLinearConv``; ``--exact`` skips that and keeps the PyTorch model's arithmetic exactly.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..deploy.export_mode import WEIGHT_FORMATS
from ..generate import Conditioning, check_conditioning
from ..models.source import resolve_model
from ..sampling import SamplerConfig
from .common import add_model_arguments, check_fresh_folder

logger = logging.getLogger(__name__)

FORMATS = ("onnx",)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``export`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "export",
        help="export a quantized model for integer deployment (ONNX QDQ)",
        description="Export a frozen quantized UNet as ONNX QDQ graphs sharing one integer weight file (text-"
        "conditioned UNets and PixArt: the text embeddings, and PixArt's padding mask, inputs of the graphs; no "
        "conv output quantizers).",
    )
    parser.add_argument("--quantized", metavar="DIR", required=True, help="a folder written by `adpdm quantize`")
    parser.add_argument("--guidance", type=float, help="guidance of the calibration sampler (default 1.0)")
    parser.add_argument("--format", default="onnx", help="output format: onnx (default)")
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder")
    add_model_arguments(parser, quantized=False)
    parser.add_argument("--exact", action="store_true", help="no conv output quantizers (exact but slow)")
    parser.add_argument("--weight-format", choices=WEIGHT_FORMATS, default="auto", help="default auto")
    parser.add_argument("--calib-samples", type=int, default=4, help="trajectories for the output ranges")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Export ``args.quantized`` to ``args.out``."""
    if args.format not in FORMATS:
        raise ValueError(f"unknown export format {args.format!r}; supported: {', '.join(FORMATS)}")
    out = Path(args.out)
    check_fresh_folder(out)
    from .. import load_quantized
    from ..deploy import CalibrationSpec, export_onnx
    from ..deploy.onnx_export import check_exportable

    model = resolve_model(args.model, args.quantized, null_class=args.null_class).model  # checked before any work
    check_exportable(model.unet)
    guidance = args.guidance if args.guidance is not None else 1.0
    text = model.kind == "text"
    if not text:
        check_conditioning(model, Conditioning(), SamplerConfig(guidance_scale=guidance))
    elif not args.exact:
        logger.info("%s is text-conditioned: exported without conv output quantizers (as --exact); the text "
                    "embeddings are an input of the graphs", model.spec)  # fmt: skip
    unet = load_quantized(args.quantized)
    calibration = None
    if not args.exact and not text:
        calibration = CalibrationSpec(model.scheduler_config, args.calib_samples, model.num_classes,
                                      model.null_class, guidance_scale=guidance)  # fmt: skip
    result = export_onnx(unet, out, calibration, args.weight_format)
    logger.info("%d graph(s), %s of %d bytes in %s", len(result.graphs), result.weights, result.weights_bytes, out)
    return 0
