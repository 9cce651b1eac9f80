"""Train the shipped MNIST classifier into ``adpdm/embedded/assets/classifier``.

Example::

    python scripts/train_classifier.py --epochs 4 --threads 1
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from adpdm.eval.classifier import CLASSIFIER_DIR, ClassifierTrainConfig, train_classifier


def main(argv: list[str] | None = None) -> None:
    """Parse flags, train, and log the test accuracy."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=CLASSIFIER_DIR)
    p.add_argument("--epochs", type=int, default=ClassifierTrainConfig.epochs)
    p.add_argument("--seed", type=int, default=ClassifierTrainConfig.seed)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = train_classifier(ClassifierTrainConfig(epochs=args.epochs, seed=args.seed), args.out)
    logging.getLogger("train_classifier").info("test accuracy %.4f", result.test_accuracy)


if __name__ == "__main__":
    main()
