"""Train one of the embedded default DDPMs and write it where ``load_embedded`` finds it.

Example::

    python scripts/train_embedded.py --name mnist-cond --steps 2000 --threads 1 \\
        --out adpdm/embedded/assets/mnist-cond
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import torch

from adpdm.training import TrainConfig, train_ddpm

MODELS = {"mnist": ("unet", False), "mnist-cond": ("unet", True), "mnist-dit": ("dit", True)}  # (arch, conditional)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (defaults are those of :class:`TrainConfig`)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", choices=sorted(MODELS), required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. adpdm/embedded/assets/mnist")
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--max-minutes", type=float, default=None, help="stop early and save after this long")
    p.add_argument("--init-from", default=None, help="continue from this saved model folder")
    p.add_argument("--fit-to-time", action="store_true", help="shorten --steps so the schedule ends in --max-minutes")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse flags, train, and record the command line and the wall time."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    arch, conditional = MODELS[args.name]
    cfg = TrainConfig(
        arch=arch,
        conditional=conditional,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        max_minutes=args.max_minutes,
        init_from=args.init_from,
        fit_to_time=args.fit_to_time,
        device=args.device,
    )
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    t0 = time.perf_counter()
    result = train_ddpm(cfg, args.out)
    wall = time.perf_counter() - t0
    (args.out / "train_command.txt").write_text(
        f"{command}\nthreads: {torch.get_num_threads()}\nsteps: {result.steps}\n"
        f"final loss: {result.final_loss:.5f}\nwall time: {wall:.0f} s ({wall / 60:.1f} min)\n"
    )


if __name__ == "__main__":
    main()
