"""``adpdm bench``: every method side by side on the embedded models (``make bench``) or on yours.

Its modes: ``--draws N`` compares over N calibration draws (the draw study), ``--diagnose`` adds the
teacher-forced output error of every sampling step, ``--recon`` / ``--calib`` change the settings
of every method alike (tune them with ``--seed`` set to validation noise, never on seed 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Any

from ..bench import ABLATIONS, BenchConfig, run_benchmark
from ..config import parse_layer_bits
from ..generate import read_prompts
from ..recon.reconstruct import BUDGETS

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("bench", help="benchmark every method side by side (same noise, same machine)")
    parser.add_argument("--quick", action="store_true", help="fewer samples and steps (about 10 minutes)")
    parser.add_argument("--name", help="results file stem (default benchmark / quick)")
    parser.add_argument("--models", help="comma-separated model specs")
    parser.add_argument("--methods", help="comma-separated methods")
    parser.add_argument("--presets", help="comma-separated presets")
    parser.add_argument("--num-samples", type=int, help="samples per model")
    parser.add_argument(
        "--layer-bits",
        metavar="SPEC",
        help="mixed precision for every method alike, e.g. "
        "'up_blocks.2.*=W6A8' (the syntax of adpdm quantize; rows state their effective bits)",
    )
    parser.add_argument(
        "--smoothing",
        action="store_true",
        help="input smoothing for every method alike (QuantConfig.smoothing; rows PRESET-smooth)",
    )
    parser.add_argument("--draws", type=int, help="calibration draws: seeds 1..N (default 4, quick 1)")
    parser.add_argument("--draw-seeds", help="comma-separated calibration seeds instead of 1..N")
    parser.add_argument("--steps", type=int, help="DDIM steps K (default 20, quick 10)")
    parser.add_argument("--budget", choices=list(BUDGETS),
                        help="reconstruction budget: fast (50 iterations per block, the default here), default "
                        "(200), thorough (1000)")  # fmt: skip
    parser.add_argument("--iters", type=int, help="reconstruction iterations per block (default 50, quick 10)")
    parser.add_argument("--seed", type=int, help="evaluation noise seed (default 0; tune settings on another)")
    parser.add_argument("--recon", metavar="JSON", help="ReconConfig overrides, e.g. '{\"lr_rounding\": 1e-3}'")
    parser.add_argument("--calib", metavar="JSON", help="CalibConfig overrides, e.g. '{\"num_samples\": 32}'")
    parser.add_argument("--eval", metavar="JSON", help="EvalConfig overrides, e.g. '{\"inception\": false}' (accuracy "
                        "and classifier-feature FID only, much faster)")  # fmt: skip
    parser.add_argument("--diagnose", action="store_true",
                        help="also the teacher-forced output error of every sampling step of every run")  # fmt: skip
    parser.add_argument("--ref", metavar="PATH", help="FID reference of every model: a folder of images or an .npz "
                        "(default: the MNIST test set for embedded models, none for others)")  # fmt: skip
    parser.add_argument("--prompts", metavar="FILE", help="text-conditioned pipelines: prompts, one per line, for "
                        "calibration and evaluation (each on its own noise)")  # fmt: skip
    parser.add_argument("--null-class", type=int, metavar="N", help="class-conditional pipeline folders: the "
                        "label trained as 'no class' (guidance 2.0 with it)")  # fmt: skip
    parser.add_argument("--out", default="benchmarks", help="output folder (default benchmarks/)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in the results file")
    parser.set_defaults(func=run)
    return parser


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON object: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    for key in ("models", "methods", "presets"):
        if getattr(args, key):
            overrides[key] = tuple(v for v in getattr(args, key).split(",") if v)
    if args.name:
        overrides["name"] = args.name
    if args.num_samples:
        overrides["num_samples"] = args.num_samples
    if args.null_class is not None:
        overrides["null_class"] = args.null_class
    if args.draws is not None and args.draw_seeds:
        raise ValueError("pass --draws N or --draw-seeds LIST, not both")
    if args.draws is not None:
        if args.draws < 1:
            raise ValueError(f"--draws must be >= 1, got {args.draws}")
        overrides["draws"] = tuple(range(1, args.draws + 1))
    if args.draw_seeds:
        overrides["draws"] = tuple(int(v) for v in args.draw_seeds.split(",") if v.strip())
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.diagnose:
        overrides["diagnose"] = True
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.layer_bits:
        overrides["layer_bits"] = parse_layer_bits(args.layer_bits)
    if args.smoothing:
        overrides["smoothing"] = True
    if args.prompts:
        overrides["prompts"] = tuple(read_prompts(args.prompts))
    cfg = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)
    if args.methods and any(m in ABLATIONS for m in cfg.methods):
        # an ablation named on the command line runs on every model and preset of the run
        cfg.ablation_models, cfg.ablation_presets = cfg.models, cfg.presets
    if args.budget is not None and args.iters is not None:
        raise ValueError("give --budget or --iters, not both")
    if args.budget is not None:
        cfg.recon = dataclasses.replace(cfg.recon, iters=BUDGETS[args.budget])
    if args.iters is not None:
        cfg.recon = dataclasses.replace(cfg.recon, iters=args.iters)
    try:
        if args.recon:
            cfg.recon = dataclasses.replace(cfg.recon, **_json_object(args.recon, "--recon"))
        if args.calib:
            cfg.calib = dataclasses.replace(cfg.calib, **_json_object(args.calib, "--calib"))
        if args.eval:
            cfg.eval = dataclasses.replace(cfg.eval, **_json_object(args.eval, "--eval"))
    except TypeError as err:  # an unknown field
        raise ValueError(f"--recon / --calib / --eval: {err}") from err
    if args.ref:
        cfg.eval = dataclasses.replace(cfg.eval, ref=args.ref)
    path = run_benchmark(cfg, args.out, resume=args.resume)
    sys.stdout.write(path.with_suffix(".md").read_text())
    return 0
