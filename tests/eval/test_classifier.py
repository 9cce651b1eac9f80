"""The shipped MNIST classifier: real accuracy of the shipped weights, features, input checks."""

from __future__ import annotations

import pytest
import torch

from adpdm.data.mnist import load_mnist
from adpdm.eval.classifier import (
    ClassifierConfig,
    MnistClassifier,
    accuracy,
    load_classifier,
    random_affine,
)


@pytest.fixture(scope="module")
def classifier() -> MnistClassifier:
    return load_classifier()


def test_shipped_weights_classify_mnist_test_images(classifier: MnistClassifier) -> None:
    images, labels = load_mnist("test")
    assert not classifier.training
    assert accuracy(classifier, images[:1000], labels[:1000]) >= 0.97


def test_features_and_logits_shapes(classifier: MnistClassifier) -> None:
    x = load_mnist("test")[0][:5]
    with torch.no_grad():
        feats, logits = classifier.features(x), classifier(x)
    assert feats.shape == (5, classifier.config.feature_dim) and (feats >= 0).all()
    assert logits.shape == (5, 10)
    torch.testing.assert_close(logits, classifier.head(feats))  # eval: dropout is off


def test_wrong_input_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, 32, 32\)"):
        MnistClassifier().features(torch.zeros(2, 1, 28, 28))


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ClassifierConfig(channels=(8, 16))


def test_missing_weights_say_how_to_train(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="scripts/train_classifier.py"):
        load_classifier(tmp_path)


def test_random_affine_keeps_background_and_shape() -> None:
    x = load_mnist("test")[0][:8]
    y = random_affine(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    assert (y[:, :, 0, :] == -1).all()  # the padded border stays background
    assert not torch.equal(x, y)
