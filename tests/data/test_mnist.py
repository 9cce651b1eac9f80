"""MNIST loading: shapes, value range, padding, labels, split sizes and errors."""

from __future__ import annotations

import gzip
import pickle

import pytest
import torch

from adpdm.data.mnist import load_mnist, mnist_pickle_path


def test_test_split_shapes_and_dtypes() -> None:
    images, labels = load_mnist("test")
    assert images.shape == (10_000, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (10_000,) and labels.dtype == torch.int64
    assert int(labels.min()) == 0 and int(labels.max()) == 9
    assert torch.bincount(labels).min() > 800  # every digit is well represented
    assert labels[:3].tolist() == [7, 2, 1]  # the official test set starts 7, 2, 1


def test_range_and_padding_border() -> None:
    images, _ = load_mnist("test")
    assert float(images.min()) == -1.0 and float(images.max()) <= 1.0
    inner = torch.zeros(32, 32, dtype=torch.bool)
    inner[2:30, 2:30] = True
    assert (images[:, :, ~inner] == -1.0).all()
    assert float(images[:, :, inner].max()) > 0.9  # strokes reach white


def test_matches_the_raw_pickle() -> None:
    images, _ = load_mnist("valid")
    with gzip.open(mnist_pickle_path(), "rb") as f:
        raw = pickle.load(f, encoding="latin1")[1][0]  # (10000, 784) in [0, 1)
    torch.testing.assert_close(images[:5, 0, 2:30, 2:30].reshape(5, -1), torch.from_numpy(raw[:5]) * 2 - 1)


@pytest.mark.parametrize(("split", "rows"), [("train", 50_000), ("valid", 10_000)])
def test_split_sizes(split: str, rows: int) -> None:
    images, labels = load_mnist(split)
    assert images.shape[0] == labels.shape[0] == rows


def test_returned_tensors_do_not_alias_the_cache() -> None:
    images, labels = load_mnist("test")
    images[0].fill_(5.0)
    labels[0] = 3
    again, again_labels = load_mnist("test")
    assert float(again[0].max()) <= 1.0 and int(again_labels[0]) == 7


def test_bad_split_names_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="'train', 'valid', 'test'"):
        load_mnist("validation")
