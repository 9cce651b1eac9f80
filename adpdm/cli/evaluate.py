"""``adpdm evaluate``: metrics of a model (and of its quantized copy) on common random numbers.

Under ``accelerate launch --num_processes N`` the sampling is spread over the processes; the
first process computes the metrics and writes the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..checkpoint import load_quantized
from ..distributed import launched_state
from ..eval.evaluate import EvalConfig, Evaluator, evaluate_against_fp, sample_models
from ..models.loading import load_model
from ..sampling import SCHEDULERS, SamplerConfig
from ..utils.resources import machine_description, resolve_device
from ..utils.table import markdown_table

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("evaluate", help="FID, PSNR and accuracy of a model and its quantized copy")
    parser.add_argument("--model", default="embedded:mnist", help="default embedded:mnist")
    parser.add_argument("--quantized", metavar="DIR", help="a quantized checkpoint of --model")
    parser.add_argument("--num-samples", type=int, default=1000, help="samples per model (default 1000)")
    parser.add_argument("--steps", type=int, default=100, help="sampling steps (default 100)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="ddim")
    parser.add_argument("--guidance", type=float, help="guidance scale (default 2.0 conditional, else 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ref-num", type=int, default=10_000, help="MNIST test images in the FID reference")
    parser.add_argument("--inception", metavar="FILE", help="TorchScript FID Inception file (default: packaged)")
    parser.add_argument("--no-inception", action="store_true", help="skip the Inception FIDs (faster)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 Inception (faster on AMX CPUs)")
    parser.add_argument("--device", help="torch device (default cuda when available, else cpu)")
    parser.add_argument("--json", metavar="FILE", help="write the results here")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.num_samples < 2:
        raise ValueError(f"--num-samples must be >= 2, got {args.num_samples}")
    eval_cfg = EvalConfig(
        ref_num=args.ref_num, inception_path=args.inception, bf16=args.bf16, inception=not args.no_inception
    )
    state = launched_state()
    device = resolve_device(args.device, state)
    model = load_model(args.model)
    guidance = args.guidance if args.guidance is not None else (2.0 if model.num_classes is not None else 1.0)
    sampler = SamplerConfig(scheduler=args.scheduler, num_steps=args.steps, guidance_scale=guidance, seed=args.seed)
    unets = {"fp32": model.unet.to(device)}
    if args.quantized:
        unets["quantized"] = load_quantized(args.quantized, device=device)
    samples = sample_models(unets, model.scheduler_config, args.num_samples, sampler, model.num_classes,
                            model.null_class, state=state)  # fmt: skip
    if state is not None and not state.is_main_process:
        return 0  # the first process computes the metrics and writes the results
    evaluator = Evaluator(eval_cfg, device=device)
    results = evaluate_against_fp(evaluator, samples, "fp32", model.num_classes is not None)
    rows = [{"model": name, **res.to_dict()} for name, res in results.items()]
    summary = {"model": args.model, "quantized": args.quantized, "sampler": sampler.__dict__,
               "eval": eval_cfg.__dict__, "rows": rows, "machine": machine_description()}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    cols = ("model", "num_samples", "fid_data", "fid_fp", "psnr", "accuracy", "clf_fid_data", "clf_fid_fp")
    sys.stdout.write(markdown_table(rows, cols) + "\n")
    return 0
