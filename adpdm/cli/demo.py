"""``adpdm demo``: the main job on the embedded default model.

Quantizes ``embedded:mnist`` with ADP-DM and round-to-nearest at W8A8 and W4A8, samples every
model from the same noise, writes a side-by-side grid and prints a table of metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..compare import CompareConfig, Run, compare_methods
from ..eval.evaluate import EvalConfig, Evaluator
from ..models.loading import load_model
from ..ptq import CalibConfig
from ..recon.reconstruct import ReconConfig
from ..sampling import side_by_side
from ..utils.resources import machine_description, provenance
from ..utils.table import markdown_table

logger = logging.getLogger(__name__)

COLUMNS = ("model", "fid_data", "fid_fp", "psnr", "haze", "clf_fid_data", "accuracy", "calib_seconds")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("demo", help="quantize the embedded model and compare (the main job)")
    parser.add_argument("--model", default="embedded:mnist", help="default embedded:mnist")
    parser.add_argument("--methods", default="rtn,adpdm", help="comma-separated methods (default rtn,adpdm)")
    parser.add_argument("--presets", default="w8a8,w4a8", help="comma-separated presets (default w8a8,w4a8)")
    # Defaults sized so that the whole demo takes minutes on a 2-core CPU; the benchmark
    # (`adpdm bench`) runs the full protocol (100 steps, more samples and iterations).
    parser.add_argument("--num", type=int, default=64, help="samples per model (default 64)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    parser.add_argument("--iters", type=int, default=20, help="reconstruction iterations per block (default 20)")
    parser.add_argument("--ref-num", type=int, default=200, help="MNIST test images in the FID reference (default 200)")
    parser.add_argument("--no-inception", action="store_true", help="skip the Inception FIDs (faster)")
    parser.add_argument("--out", default="demo", help="output folder (default demo/)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    presets = tuple(p for p in args.presets.split(",") if p)
    cmp = CompareConfig(methods=tuple(m for m in args.methods.split(",") if m), presets=presets, draws=(1,),
                        eval_seed=0, num_samples=args.num, steps=args.steps, groups=None,
                        calib=CalibConfig(num_samples=16, calib_steps=min(5, args.steps), signature_samples=4),
                        recon=ReconConfig(iters=args.iters))  # fmt: skip
    eval_cfg = EvalConfig(ref_num=args.ref_num, inception=not args.no_inception)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    runs: list[Run] = []
    fp = compare_methods(model, cmp, Evaluator(eval_cfg), runs.append)
    named = {f"{r.row['method']} {r.row['preset'].upper()}": r for r in runs if r.row["method"] != "fp32"}
    grid = side_by_side({"fp32": fp.images[:64], **{n: r.images[:64] for n, r in named.items()}}, out / "grid.png")
    rows = [{**fp.row, "model": "fp32"}] + [{**r.row, "model": n} for n, r in named.items()]
    summary = {"model": args.model, "num_samples": args.num, "steps": args.steps, "ref_num": args.ref_num,
               "rows": rows, **provenance(), "machine": machine_description()}  # fmt: skip
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    sys.stdout.write(markdown_table(rows, COLUMNS) + "\n")
    sys.stdout.write(f"\nsamples from the same noise: {grid}\nresults: {out / 'results.json'}\n")
    return 0
