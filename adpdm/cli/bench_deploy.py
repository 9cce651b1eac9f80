"""``adpdm bench-deploy``: speed and size of the ONNX Runtime deployment, written with the machine.

A benchmark, never a test: it writes ``benchmarks/results/deploy_<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from ..deploy.export_mode import WEIGHT_FORMATS
from ..models.source import resolve_model
from .common import add_model_arguments

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``bench-deploy`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "bench-deploy",
        help="time int8 ONNX Runtime against fp32 ONNX Runtime and PyTorch; file sizes",
        description="Export a quantized checkpoint (exact and int8-conv graphs) and an fp32 graph; time "
        "UNet forwards and whole sampling runs at each batch size; per-operator profiles.",
    )
    parser.add_argument("--quantized", metavar="DIR", required=True, help="a folder written by `adpdm quantize`")
    add_model_arguments(parser, quantized=False)
    parser.add_argument("--name", help="results name (default: the folder's name)")
    parser.add_argument("--out-dir", default="benchmarks/results", help="default benchmarks/results")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of 20")
    parser.add_argument(
        "--weight-format",
        choices=WEIGHT_FORMATS,
        default="auto",
        help="weight format of the quantized exports (default auto; uint4: 4-bit weights as 4 bits)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write the JSON and markdown results."""
    import onnxruntime

    from ..deploy.bench import BenchConfig, bench_deploy, markdown
    from ..utils.resources import cpu_isa, machine_description, provenance

    name = args.name or Path(args.quantized).name
    if not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"--name must be letters, digits, '.', '-' or '_', got {name!r}")
    resolved = resolve_model(args.model, args.quantized, null_class=args.null_class)  # checked before any work
    model = resolved.model
    from ..deploy.onnx_export import check_exportable

    check_exportable(model.unet)
    # whole sampling runs use the checkpoint's schedule: K steps
    cfg = BenchConfig(steps=resolved.steps, repeats=5 if args.quick else 20, threads=args.threads,
                      weight_format=args.weight_format)  # fmt: skip
    result = bench_deploy(args.quantized, model, cfg)
    result = {"name": name, "quick": args.quick, "quantized": str(args.quantized), "model": model.spec,
              "config": vars(cfg), **provenance(), "machine": {**machine_description(), "cpu_isa": cpu_isa()},
              "onnxruntime": onnxruntime.__version__, "ort_threads": args.threads, **result}  # fmt: skip
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"deploy_{name}.json").write_text(json.dumps(result, indent=2, default=str))
    (out / f"deploy_{name}.md").write_text(markdown(name, result))
    logger.info("wrote %s", out / f"deploy_{name}.json")
    return 0
