"""``adpdm fid-stats``: FID Inception statistics of a folder of images, written as an ``.npz``.

The file (``mu``, ``sigma`` as in pytorch-fid, plus ``n``) is a reference for
``EvalConfig(ref=...)``; computing it once saves recomputing the folder's features each run.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``fid-stats`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "fid-stats",
        help="FID reference statistics (mu, sigma) of a folder of images",
        description="Compute the FID Inception statistics of every PNG/JPEG image under IMAGES (recursive) "
        "and write them as an .npz (mu, sigma, n), readable by pytorch-fid and by EvalConfig(ref=...).",
    )
    parser.add_argument("images", metavar="IMAGES", help="a folder of .png/.jpg/.jpeg images, any size and mode")
    parser.add_argument("--out", metavar="FILE", required=True, help="the .npz to write")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--inception", metavar="FILE", help="TorchScript FID Inception file (default: packaged)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 Inception (never mix with fp32 statistics)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--device", help="torch device (default cuda when available, else cpu)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Compute the statistics of ``args.images`` and write them to ``args.out``."""
    from ..eval.inception import load_inception
    from ..eval.reference import check_stats_path, folder_stats, list_images, save_reference_stats
    from ..utils.resources import resolve_device

    out = check_stats_path(args.out, overwrite=args.force)  # a bad --out fails before any work
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    list_images(args.images)  # a bad folder fails before the network loads
    extractor = load_inception(args.inception, device=resolve_device(args.device), bf16=args.bf16)
    stats = folder_stats(extractor, args.images, batch_size=args.batch_size)
    save_reference_stats(stats, out, overwrite=args.force)
    logger.info("wrote FID statistics of %d images in %s to %s", stats.n, args.images, out)
    return 0
