"""Metrics that need no model: per-sample PSNR, background haze, FID from given features, accuracy per class.

PSNR compares two images of the same content (e.g. a quantized model's sample and the
full-precision sample from the same noise); FID compares two distributions of features. The
background haze is the part of the error that FID sees most on dark-background data: a faint
gray where the reference is black (the sampler's final clip keeps the upper half of a zero-mean
error there).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from .frechet import FeatureStats, frechet_distance, frechet_distance_from_features

logger = logging.getLogger(__name__)

PSNR_CAP_DB = 100.0


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-sample peak signal-to-noise ratio, ``10 log10(data_range^2 / MSE)``.

    Args:
        a: (N, ...) images, e.g. in [-1, 1].
        b: images of the same shape as ``a``.
        data_range: max minus min of the value range. Default 2.0 (images in [-1, 1]).

    Returns:
        float64 (N,) in dB; ``inf`` where a sample is identical in both (MSE = 0).
        Computed in float64, so float32 inputs that differ slightly do not round to 0.
    """
    if a.shape != b.shape or a.dim() < 1:
        raise ValueError(f"psnr needs two batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    diff = a.detach().double() - b.detach().to(a.device).double()
    mse = diff.flatten(1).pow(2).mean(dim=1) if diff.dim() > 1 else diff.pow(2)  # (N,)
    # log10 of 0 is -inf, so identical samples give +inf without a special case.
    return 10.0 * (2.0 * math.log10(data_range) - torch.log10(mse))


def _far_background(
    images: torch.Tensor, reference: torch.Tensor, floor: float, ink: float, margin: int, min_share: float, what: str
) -> torch.Tensor | None:  # fmt: skip
    """(N, C, H, W) mask of the pixels at least ``margin`` pixels away from any pixel of ``reference`` above
    ``floor + ink`` in any channel, on ``images``' device; None when under ``min_share`` of the pixels."""
    if images.shape != reference.shape or images.dim() != 4:
        raise ValueError(f"{what} needs two (N, C, H, W) batches of one shape, got {tuple(images.shape)} "
                         f"and {tuple(reference.shape)}")  # fmt: skip
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    inked = (reference.detach().float() > floor + ink).any(1, keepdim=True).float()
    far = torch.nn.functional.max_pool2d(inked, 2 * margin + 1, stride=1, padding=margin) == 0
    if float(far.float().mean()) < min_share:
        return None
    return far.expand_as(images).to(images.device)


def background_haze(
    images: torch.Tensor, reference: torch.Tensor, floor: float = -1.0, ink: float = 0.05, margin: int = 3,
    min_share: float = 0.05,
) -> float | None:  # fmt: skip
    """RMS above the black ``floor`` of ``images`` over the reference's far background.

    The background is every pixel of ``reference`` (e.g. the FP samples of the same noise) at least
    ``margin`` pixels away from any pixel above ``floor + ink`` in any channel, so that a moved stroke
    is not counted as haze. ``background_haze(fp, fp)`` is the reference's own level.

    Args:
        images: (N, C, H, W) samples in [floor, ...], e.g. [-1, 1].
        reference: (N, C, H, W) samples of the same noise.

    Returns:
        The RMS of ``images - floor`` on the background pixels, or None when fewer than ``min_share``
        of the pixels are background (data without a black floor, e.g. natural images).
    """
    background = _far_background(images, reference, floor, ink, margin, min_share, "background_haze")
    if background is None:
        return None
    above = images.detach().double()[background] - floor
    return float(above.pow(2).mean().sqrt())


def background_speckle(
    images: torch.Tensor, reference: torch.Tensor, floor: float = -1.0, ink: float = 0.05, margin: int = 3,
    min_share: float = 0.05,
) -> float | None:  # fmt: skip
    """Spread of ``images`` over the reference's far background, within each image.

    The background is :func:`background_haze`'s. Per image, the standard deviation of its background
    pixels; the mean over the images. A uniformly lifted floor scores 0, speckle of scattered faint
    pixels scores high: on MNIST the Inception FID moves with the speckle and barely with a uniform lift
    (``studies/fid-speckle/results/fid_study.md``, section 5), while the RMS of :func:`background_haze`
    counts both alike.

    Returns:
        The mean per-image standard deviation, or None when fewer than ``min_share`` of the pixels are
        background.
    """
    background = _far_background(images, reference, floor, ink, margin, min_share, "background_speckle")
    if background is None:
        return None
    x, m = images.detach().double(), background.double()
    n = m.flatten(1).sum(1)
    mean = (x * m).flatten(1).sum(1) / n.clamp(min=1)
    var = ((x - mean.view(-1, 1, 1, 1)).pow(2) * m).flatten(1).sum(1) / n.clamp(min=1)
    return float(var[n >= 2].sqrt().mean())


@dataclass
class PSNRSummary:
    """Aggregates of per-sample PSNR values.

    Attributes:
        mean_capped: mean with infinite values (identical samples) replaced by ``cap`` dB.
        mean_finite: mean over finite values only; ``inf`` if every sample is identical.
        median: median of all values (may be ``inf``).
        num_identical: how many samples were identical (infinite PSNR).
        n: number of samples.
        cap: the cap used for ``mean_capped``.
    """

    mean_capped: float
    mean_finite: float
    median: float
    num_identical: int
    n: int
    cap: float


def mean_psnr(values: torch.Tensor, cap: float | None = PSNR_CAP_DB) -> float:
    """Mean of per-sample PSNR values with a defined treatment of ``inf``.

    Args:
        values: (N,) from :func:`psnr`.
        cap: replace ``inf`` (identical samples) by this many dB before averaging.
            Default 100 dB: well above any visible difference (an error of one 8-bit level on
            every pixel is 48 dB) yet finite, so one identical sample cannot dominate the mean.
            ``None`` drops infinite values instead; if all are infinite the result is ``inf``.
    """
    v = values.detach().double().cpu()
    if v.numel() == 0 or torch.isnan(v).any():
        raise ValueError("mean_psnr needs a non-empty tensor without NaN")
    if cap is not None:
        return float(v.clamp(max=cap).mean())
    finite = v[torch.isfinite(v)]
    return float(finite.mean()) if finite.numel() else math.inf


def summarize_psnr(values: torch.Tensor, cap: float = PSNR_CAP_DB) -> PSNRSummary:
    """All the aggregates of :class:`PSNRSummary` for (N,) PSNR values."""
    v = values.detach().double().cpu()
    return PSNRSummary(
        mean_capped=mean_psnr(v, cap=cap),
        mean_finite=mean_psnr(v, cap=None),
        median=float(v.median()),
        num_identical=int(torch.isinf(v).sum()),
        n=v.numel(),
        cap=cap,
    )


def class_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    """Top-1 accuracy of predictions ``pred`` (N,) per intended label in ``labels`` (N,), for the labels
    that occur, in label order."""
    if pred.shape != labels.shape or pred.dim() != 1:
        raise ValueError(f"class_accuracy needs two (N,) tensors, got {tuple(pred.shape)} and {tuple(labels.shape)}")
    pred, labels = pred.cpu(), labels.cpu()
    return {int(c): float((pred[labels == c] == c).float().mean()) for c in labels.unique().tolist()}


def confusions(pred: torch.Tensor, labels: torch.Tensor, top: int = 10) -> list[tuple[int, int, int]]:
    """The ``top`` most frequent wrong (intended label, predicted label, count), most frequent first."""
    if pred.shape != labels.shape or pred.dim() != 1:
        raise ValueError(f"confusions needs two (N,) tensors, got {tuple(pred.shape)} and {tuple(labels.shape)}")
    wrong = pred.cpu() != labels.cpu()
    pairs, counts = torch.stack([labels.cpu()[wrong], pred.cpu()[wrong]], 1).unique(dim=0, return_counts=True)
    found = [(int(a), int(b), int(n)) for (a, b), n in zip(pairs.tolist(), counts.tolist(), strict=True)]
    return sorted(found, key=lambda x: (-x[2], x[0], x[1]))[:top]


def weakest_classes(acc: dict[int, float], top: int = 3) -> list[tuple[int, float]]:
    """The ``top`` labels of :func:`class_accuracy` with the lowest accuracy (ties by label)."""
    return sorted(acc.items(), key=lambda kv: (kv[1], kv[0]))[:top]


def fid_from_features(
    feats_a: torch.Tensor | np.ndarray | FeatureStats, feats_b: torch.Tensor | np.ndarray | FeatureStats
) -> float:
    """Fréchet distance between two feature sets, each given as (N, D) features or as stats.

    With Inception pool3 features this is FID. When both are raw features with N <= D
    (e.g. up to 2048 Inception features) it uses the exact O(N^2 D) route of
    :func:`frechet_distance_from_features`; otherwise the D x D statistics route. Note
    that FID is biased upwards for small N (about 11 between two disjoint sets of 1000
    MNIST test images): compare values only at equal N.
    """
    raw = not isinstance(feats_a, FeatureStats) and not isinstance(feats_b, FeatureStats)
    if raw and max(len(feats_a), len(feats_b)) <= feats_a.shape[-1]:
        return frechet_distance_from_features(feats_a, feats_b)
    a = feats_a if isinstance(feats_a, FeatureStats) else FeatureStats.from_features(feats_a)
    b = feats_b if isinstance(feats_b, FeatureStats) else FeatureStats.from_features(feats_b)
    return frechet_distance(a, b)
