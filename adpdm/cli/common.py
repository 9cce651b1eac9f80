"""Arguments shared by the subcommands: which model, which checkpoint, what to condition on."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..generate import Conditioning, parse_labels, read_prompts


def add_model_arguments(parser: argparse.ArgumentParser, quantized: bool = True) -> None:
    """``--model``, ``--null-class`` and (optionally) ``--quantized``."""
    parser.add_argument(
        "--model",
        help="embedded:NAME, a diffusers pipeline folder or a cached hub id (default: "
        + ("the checkpoint's model, else " if quantized else "")
        + "embedded:mnist)",
    )
    parser.add_argument(
        "--null-class", type=int, metavar="N",
        help="class-conditional pipelines: the label trained as 'no class' (needed for guidance)",
    )  # fmt: skip
    if quantized:
        parser.add_argument("--quantized", metavar="DIR", help="a folder written by `adpdm quantize`")


def add_conditioning_arguments(parser: argparse.ArgumentParser, guidance_default: str) -> None:
    """``--labels``, ``--prompts`` and ``--guidance``."""
    parser.add_argument("--labels", help="class labels, comma-separated, repeated over the samples (default all)")
    parser.add_argument("--prompts", metavar="FILE", help="text-conditioned pipelines: prompts, one per line")
    parser.add_argument("--guidance", type=float, help=f"classifier-free guidance scale ({guidance_default})")


def conditioning(args: argparse.Namespace) -> Conditioning:
    """The labels and prompts of the parsed arguments (files read and checked here)."""
    prompts = read_prompts(args.prompts) if getattr(args, "prompts", None) else None
    return Conditioning(labels=parse_labels(getattr(args, "labels", None)), prompts=prompts)


def check_fresh_folder(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not an empty folder (it may hold another run)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} already exists and is not an empty folder: choose a new folder")
