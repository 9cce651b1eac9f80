"""``adpdm analyze``: which layers and which sampling steps carry a quantization preset's error.

Forward passes only (no reconstruction): on the FP sampler's recorded inputs, one layer at a time
is quantized (its weights, then its input activations) and the model's output error is measured
per step; see :mod:`adpdm.analysis`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from ..analysis import AnalyzeConfig, analyze, figures, format_cli, format_layer_bits, suggest, worst_table
from ..analysis.report import SensitivityReport
from ..analysis.suggest import KEEP_BITS, format_layer_bits_cli, suggest_bops
from ..config import QuantConfig
from ..generate import read_prompts
from ..models.loading import load_model
from .common import add_model_arguments, check_fresh_folder

logger = logging.getLogger(__name__)

FILES = ("analysis.json", "heatmap.png", "ranges.png")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``analyze`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "analyze",
        help="per-layer, per-step sensitivity of a model to a quantization preset",
        description="Quantize one layer at a time (weights, then input activations; attention blocks' matmul "
        "quantizers together) on the FP sampler's recorded inputs and measure the model's relative output error "
        "per sampling step; also the error with everything quantized and the per-step activation ranges.",
    )
    add_model_arguments(parser, quantized=False)
    parser.add_argument("--preset", default="w6a6", choices=QuantConfig.preset_names(), help="(default w6a6)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM sampling steps K (default 20)")
    parser.add_argument("--num-samples", type=int, default=8, help="FP trajectories recorded (default 8)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the model's, 2.0 class, 7.5 text)")
    parser.add_argument("--prompts", metavar="FILE", help="text-conditioned pipelines: prompts, one per line")
    parser.add_argument("--seed", type=int, default=1, help="seed of the trajectories (default 1; 0 is evaluation's)")
    parser.add_argument("--layers", help="comma-separated fnmatch patterns of the layers to analyse (default all)")
    parser.add_argument("--percentile", type=float, default=99.9, help="activation range percentile (default 99.9)")
    parser.add_argument("--top", type=int, default=10, help="rows of the table of worst layers (default 10)")
    parser.add_argument(
        "--suggest",
        metavar="BUDGET",
        help="layers to keep at 8 bits within BUDGET extra weight "
        "bytes (0.05 or 5%% of the FP32 weights, or 200KB); with --suggest-by bops, the weights or "
        "activations to raise to 8 bits within BUDGET extra bit-operations (0.1 or 10%% of the preset's)",
    )
    parser.add_argument(
        "--suggest-by",
        choices=("bytes", "bops"),
        default="bytes",
        help="what --suggest's budget counts (default bytes)",
    )
    parser.add_argument("--out", metavar="DIR", help="write analysis.json, heatmap.png and ranges.png (a new folder)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (default 64)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", help="torch device (default cuda when available, else cpu)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Analyse, print the worst layers (and a suggestion), write the files."""
    out = Path(args.out) if args.out else None
    if out is not None:
        check_fresh_folder(out)
    if args.suggest and args.suggest_by == "bytes" and QuantConfig.preset(args.preset).wbits >= KEEP_BITS:
        raise ValueError(
            f"--suggest {args.suggest} counts extra weight bytes, and {args.preset}'s weights are already "
            f"{KEEP_BITS}-bit: keeping a layer at {KEEP_BITS} bits costs no bytes, so a bytes budget cannot "
            "choose; add --suggest-by bops (extra bit-operations, e.g. --suggest 10%)"
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = load_model(args.model or "embedded:mnist", args.null_class)
    prompts = tuple(read_prompts(args.prompts)) if args.prompts else None
    layers = tuple(p.strip() for p in args.layers.split(",") if p.strip()) if args.layers else ("*",)
    cfg = AnalyzeConfig(num_samples=args.num_samples, steps=args.steps, guidance=args.guidance, seed=args.seed,
                        batch_size=args.batch_size, device=args.device, layers=layers, percentile=args.percentile,
                        prompts=prompts)  # fmt: skip
    report = analyze(model, args.preset, cfg)
    sys.stdout.write(f"\n{report.model} {report.preset}: all layers quantized, trajectory-weighted relative error "
                     f"{report.all_layers.score:.4g} (unweighted {report.all_layers.mean:.4g}); "
                     f"{report.seconds:.0f} s\n\n{worst_table(report, args.top)}\n")  # fmt: skip
    if args.suggest:
        text = _suggestion(report, args.suggest) if args.suggest_by == "bytes" else _bops(report, args.suggest)
        sys.stdout.write(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        report.save(out / FILES[0])
        figures.heatmap(report, out / FILES[1])
        figures.ranges(report, out / FILES[2])
        logger.info("wrote %s", ", ".join(str(out / f) for f in FILES))
    return 0


def _suggestion(report: SensitivityReport, budget: str) -> str:
    s = suggest(report, budget)
    if not s.patterns:
        return f"\n--suggest {budget}: no layer to keep at 8 bits ({s.budget_bytes} bytes: none gains or fits)\n"
    return (f"\nkeep at 8 bits ({len(s.patterns)} layers, {s.extra_bytes} of {s.budget_bytes} bytes, "
            f"{100 * s.covered:.0f}% of the layers' score):\n{format_cli(s.patterns, s.abits)}\n"
            f"{format_layer_bits(s.patterns, s.abits)}\n")  # fmt: skip


def _bops(report: SensitivityReport, budget: str) -> str:
    s = suggest_bops(report, budget)
    if not s.layer_bits:
        return (
            f"\n--suggest {budget} --suggest-by bops: nothing to raise ({s.budget_bops:,} BOPs: none gains or fits)\n"
        )
    return (f"\nraise to 8 bits ({len(s.layer_bits)} layers, {s.extra_bops:,} of {s.budget_bops:,} extra BOPs per "
            f"sample over the preset's {s.base_bops:,}, {100 * s.covered:.0f}% of the candidates' score):\n"
            f"{format_layer_bits_cli(s.layer_bits)}\n")  # fmt: skip
