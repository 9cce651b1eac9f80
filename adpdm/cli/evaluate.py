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
from ..eval.metrics import weakest_classes
from ..generate import check_conditioning
from ..models.loading import is_embedded
from ..models.source import resolve_model
from ..sampling import SCHEDULERS, SamplerConfig
from ..utils.resources import machine_description, provenance, resolve_device
from ..utils.table import markdown_table
from .common import add_conditioning_arguments, add_model_arguments, conditioning

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="FID, PSNR and accuracy of a model and its quantized copy",
        description="Sample the FP model and its quantized copy from the same noise; report FID against the "
        "reference (--ref: a folder of images or an .npz from `adpdm fid-stats`; the MNIST test set for the "
        "embedded models), FID against the FP samples, PSNR against the FP sample of the same noise, and the "
        "accuracy of --classifier for class-conditional models.",
    )
    add_model_arguments(parser)
    add_conditioning_arguments(parser, guidance_default="default 2.0 class-conditional with a null class, 7.5 "
                               "text, else 1.0")  # fmt: skip
    parser.add_argument("--num-samples", type=int, default=1000, help="samples per model (default 1000)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the checkpoint's K, else 100)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="ddim")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ref", metavar="PATH", help="FID reference: a folder of PNG/JPEG images or an .npz (mu, sigma)"
    )
    parser.add_argument("--ref-num", type=int, default=10_000, help="embedded models without --ref: MNIST test "
                        "images in the FID reference (default 10000)")  # fmt: skip
    parser.add_argument("--classifier", metavar="FILE", help="TorchScript classifier: images in [-1, 1] -> logits")
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
    # every input is checked before any sampling
    resolved = resolve_model(args.model, args.quantized, args.steps, args.null_class)
    model = resolved.model
    eval_cfg = EvalConfig(ref_num=args.ref_num, inception_path=args.inception, bf16=args.bf16,
                          inception=not args.no_inception, ref=args.ref, mnist=is_embedded(model.spec),
                          classifier=args.classifier)  # fmt: skip
    guidance = args.guidance if args.guidance is not None else model.default_guidance
    sampler = SamplerConfig(scheduler=args.scheduler, num_steps=resolved.steps, guidance_scale=guidance,
                            batch_size=args.batch_size, seed=args.seed)  # fmt: skip
    cond = conditioning(args)
    check_conditioning(model, cond, sampler)
    if model.kind == "text" and len(cond.prompts) < 2 and args.num_samples > 1:
        logger.info("one prompt for every sample: FID measures the spread of that prompt's images")
    state = launched_state()
    device = resolve_device(args.device, state)
    evaluator = Evaluator(eval_cfg, device=device)  # loads and checks the reference and classifier files first
    if args.ref is not None:
        evaluator.reference()
    unets = {"fp32": model.unet.to(device)}
    if args.quantized:
        unets["quantized"] = load_quantized(args.quantized, device=device)
    samples = sample_models(unets, model, args.num_samples, sampler, cond, state=state)
    if state is not None and not state.is_main_process:
        return 0  # the first process computes the metrics and writes the results
    results = evaluate_against_fp(evaluator, samples, "fp32", model.kind == "class")
    rows = [{"model": name, **res.to_dict()} for name, res in results.items()]
    summary = {"model": model.spec, "kind": model.kind, "quantized": args.quantized, "sampler": sampler.__dict__,
               "eval": eval_cfg.__dict__, "rows": rows, **provenance(), "machine": machine_description()}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str))
    cols = ("model", "num_samples", "fid_data", "fid_fp", "psnr", "accuracy", "clf_fid_data", "clf_fid_fp")
    cols = tuple(c for c in cols if any(r.get(c) is not None for r in rows) or c in ("model", "num_samples"))
    sys.stdout.write(markdown_table(rows, cols) + "\n")
    for row in rows:
        per_class = row["extra"].get("class_accuracy")
        if per_class:
            weakest = weakest_classes({int(c): a for c, a in per_class.items()})
            sys.stdout.write(f"{row['model']}: lowest accuracy by class: "
                             + ", ".join(f"{c} {a:.3f}" for c, a in weakest) + "\n")  # fmt: skip
        pairs = row["extra"].get("confusions")
        if pairs:
            sys.stdout.write(f"{row['model']}: most frequent confusions (intended->read): "
                             + ", ".join(f"{a}->{b} {n}" for a, b, n in pairs[:5]) + "\n")  # fmt: skip
    return 0
