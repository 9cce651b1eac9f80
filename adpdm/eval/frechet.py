"""Gaussian feature statistics and the Fréchet distance between them (the maths behind FID).

Notation: a set of ``n`` feature vectors of dimension ``D`` is summarised by its mean
``mu`` (D,) and unbiased covariance ``sigma`` (D, D). The Fréchet (2-Wasserstein) distance
between N(mu1, S1) and N(mu2, S2) is::

    d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})

Everything here is float64 numpy; no model is involved.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor


def _to_float64(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _check_features(feats: np.ndarray) -> None:
    if feats.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {feats.shape}")
    if not np.isfinite(feats).all():
        raise ValueError("features contain NaN or inf")


@dataclass
class FeatureStats:
    """Mean and unbiased covariance of ``n`` feature vectors.

    Args:
        mu: float64 array of shape (D,).
        sigma: float64 array of shape (D, D), symmetric positive semi-definite.
        n: number of feature vectors the statistics were computed from (>= 2).
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def __post_init__(self) -> None:
        self.mu = _to_float64(self.mu)
        self.sigma = _to_float64(self.sigma)
        self.n = int(self.n)
        d = self.mu.shape[0] if self.mu.ndim == 1 else -1
        if self.mu.ndim != 1 or self.sigma.shape != (d, d):
            raise ValueError(f"need mu (D,) and sigma (D, D), got {self.mu.shape} and {self.sigma.shape}")
        if self.n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, got n={self.n}")

    @property
    def dim(self) -> int:
        return self.mu.shape[0]

    @classmethod
    def from_features(cls, feats: ArrayLike) -> FeatureStats:
        """Statistics of a (N, D) array or tensor of features, computed in float64."""
        acc = StatsAccumulator()
        acc.update(feats)
        return acc.finalize()

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``.npz`` or ``.safetensors`` (chosen by the suffix); never pickle.

        The write goes through a temporary file and a rename, so a reader never sees a
        half-written file.
        """
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        arrays = {"mu": self.mu, "sigma": self.sigma, "n": np.array([self.n], dtype=np.int64)}
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(arrays, str(tmp))
        elif path.suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        else:
            raise ValueError(f"unknown stats format {path.suffix!r}: use .npz or .safetensors")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        """Read statistics written by :meth:`save` (``.npz`` or ``.safetensors``)."""
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            arrays = load_file(str(path))
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            raise ValueError(f"unknown stats format {path.suffix!r}: use .npz or .safetensors")
        missing = {"mu", "sigma", "n"} - set(arrays)
        if missing:
            raise ValueError(f"{path} is not a stats file: missing {sorted(missing)}")
        return cls(mu=arrays["mu"], sigma=arrays["sigma"], n=int(arrays["n"].reshape(-1)[0]))


class StatsAccumulator:
    """Streaming mean/covariance in float64, one batch of features at a time.

    Batches are merged with Chan et al.'s pairwise update of the mean and of the centred
    sum of squares ``M2``, which, unlike accumulating raw ``sum(x x^T)``, does not lose
    precision when the mean is large compared with the spread.

    Example::

        acc = StatsAccumulator()
        for batch in loader:
            acc.update(extractor(batch))
        stats = acc.finalize()
    """

    def __init__(self) -> None:
        self.n = 0
        self._mean: np.ndarray | None = None  # (D,)
        self._m2: np.ndarray | None = None  # (D, D), sum of centred outer products

    def update(self, batch: ArrayLike) -> None:
        """Add a (B, D) batch of features."""
        x = _to_float64(batch)
        _check_features(x)
        nb = x.shape[0]
        if nb == 0:
            return
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        m2_b = xc.T @ xc
        if self._mean is None:
            self.n, self._mean, self._m2 = nb, mean_b, m2_b
            return
        if x.shape[1] != self._mean.shape[0]:
            raise ValueError(f"feature dim changed from {self._mean.shape[0]} to {x.shape[1]}")
        n = self.n + nb
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (nb / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (self.n * nb / n)
        self.n = n

    def finalize(self) -> FeatureStats:
        """The statistics so far, with the unbiased (n - 1) covariance."""
        if self._mean is None or self.n < 2:
            raise ValueError(f"need at least 2 feature vectors, got {self.n}")
        sigma = self._m2 / (self.n - 1)
        return FeatureStats(mu=self._mean.copy(), sigma=0.5 * (sigma + sigma.T), n=self.n)


def _clip_spectrum(w: np.ndarray) -> np.ndarray:
    """Zero the eigenvalues of a PSD matrix that are round-off, not signal.

    Eigenvalues below ``D * eps * max|w|`` (the usual numerical-rank tolerance) are set to 0.
    Without this, the ~1e-15 noise on the zero eigenvalues of a rank-deficient covariance
    (n < D) would each add ~sqrt(1e-15) to the trace of the square root.
    """
    tol = w.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 1e-300)
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix via ``eigh``."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(_clip_spectrum(w))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """``tr((S1 S2)^{1/2})`` for symmetric PSD ``S1``, ``S2``, in float64.

    ``S1 S2`` has the same eigenvalues as the symmetric PSD matrix ``A S2 A`` with
    ``A = S1^{1/2}`` (``AB`` and ``BA`` share their spectrum), so the trace is the sum of
    the square roots of that matrix's eigenvalues. Unlike ``scipy.linalg.sqrtm(S1 @ S2)``
    this never leaves the reals and holds for singular covariances (n < D).
    """
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    a = _psd_sqrt(s1)
    m = a @ s2 @ a
    ev = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sqrt(_clip_spectrum(ev)).sum())


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (FID when the
    features are Inception pool3 features).

    Args:
        a: statistics of the first set.
        b: statistics of the second set; must have the same dimension.

    Returns:
        ``||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})`` as a float >= 0.
    """
    if a.dim != b.dim:
        raise ValueError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    diff = a.mu - b.mu
    tr_a, tr_b = float(np.trace(a.sigma)), float(np.trace(b.sigma))
    d2 = float(diff @ diff) + tr_a + tr_b - 2.0 * trace_sqrt_product(a.sigma, b.sigma)
    # The true value is >= 0; only round-off (relative to the traces) can push it below.
    if d2 < -1e-9 * max(tr_a + tr_b, 1.0):
        logger.warning("Fréchet distance came out negative (%.3g); clipping to 0", d2)
    return max(d2, 0.0)


def frechet_distance_from_features(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """The same distance as :func:`frechet_distance`, computed from the features themselves.

    With centred features ``Xa`` (na, D) and ``Xb`` (nb, D), ``S_a S_b`` has the nonzero
    spectrum of ``(Xa Xb^T)(Xa Xb^T)^T / c`` with ``c = (na - 1)(nb - 1)``, so
    ``tr((S_a S_b)^{1/2})`` is the nuclear norm of ``Xa Xb^T`` over ``sqrt(c)``. This costs
    O(na nb D) instead of two D x D eigendecompositions, and it is more accurate when
    n < D (no square roots of round-off eigenvalues), so prefer it while na, nb <= D.

    Args:
        feats_a: (na, D) features, na >= 2.
        feats_b: (nb, D) features, nb >= 2.
    """
    xa, xb = _to_float64(feats_a), _to_float64(feats_b)
    for x in (xa, xb):
        _check_features(x)
        if x.shape[0] < 2:
            raise ValueError(f"need at least 2 feature vectors, got {x.shape[0]}")
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"feature dimensions differ: {xa.shape[1]} vs {xb.shape[1]}")
    na, nb = xa.shape[0], xb.shape[0]
    mu_a, mu_b = xa.mean(axis=0), xb.mean(axis=0)
    xa, xb = xa - mu_a, xb - mu_b  # two-pass centring keeps full float64 precision
    tr_a = float(np.einsum("ij,ij->", xa, xa)) / (na - 1)
    tr_b = float(np.einsum("ij,ij->", xb, xb)) / (nb - 1)
    nuclear = float(np.linalg.svd(xa @ xb.T, compute_uv=False).sum())  # (na, nb) singular values
    diff = mu_a - mu_b
    d2 = float(diff @ diff) + tr_a + tr_b - 2.0 * nuclear / np.sqrt((na - 1) * (nb - 1))
    return max(d2, 0.0)
