"""``adpdm bench``: every method side by side on the embedded models (``make bench``) or on yours."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any

from ..bench import BenchConfig, run_benchmark

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("bench", help="benchmark every method side by side (same noise, same machine)")
    parser.add_argument("--quick", action="store_true", help="fewer samples and steps (about 10 minutes)")
    parser.add_argument("--name", help="results file stem (default full / quick)")
    parser.add_argument("--models", help="comma-separated model specs")
    parser.add_argument("--methods", help="comma-separated methods")
    parser.add_argument("--presets", help="comma-separated presets")
    parser.add_argument("--num-samples", type=int, help="samples per model")
    parser.add_argument("--ref", metavar="PATH", help="FID reference of every model: a folder of images or an .npz "
                        "(default: the MNIST test set for embedded models, none for others)")  # fmt: skip
    parser.add_argument("--null-class", type=int, metavar="N", help="class-conditional pipeline folders: the "
                        "label trained as 'no class' (guidance 2.0 with it)")  # fmt: skip
    parser.add_argument("--out", default="benchmarks", help="output folder (default benchmarks/)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in the results file")
    parser.set_defaults(func=run)
    return parser


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
    cfg = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)
    if args.ref:
        cfg.eval = dataclasses.replace(cfg.eval, ref=args.ref)
    path = run_benchmark(cfg, args.out, resume=args.resume)
    sys.stdout.write(path.with_suffix(".md").read_text())
    return 0
