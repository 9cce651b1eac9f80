import numpy as np
import pytest
import scipy.linalg
import torch

from adpdm.eval.frechet import (
    FeatureStats,
    StatsAccumulator,
    frechet_distance,
    frechet_distance_from_features,
    trace_sqrt_product,
)


def _random_cov(rng: np.random.Generator, d: int, cond: float = 10.0) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = np.geomspace(1.0, 1.0 / cond, d)
    return (q * eig) @ q.T


def _sqrtm_reference(a: FeatureStats, b: FeatureStats) -> float:
    covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma).real
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [3, 32, 64])
def test_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    a = FeatureStats(rng.standard_normal(d), _random_cov(rng, d), n=100)
    b = FeatureStats(rng.standard_normal(d), _random_cov(rng, d), n=100)
    np.testing.assert_allclose(frechet_distance(a, b), _sqrtm_reference(a, b), rtol=1e-6)


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    s1, s2 = rng.uniform(0.1, 3.0, 20), rng.uniform(0.1, 3.0, 20)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    expected = np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2) + np.sum((mu1 - mu2) ** 2)
    got = frechet_distance(FeatureStats(mu1, np.diag(s1), 10), FeatureStats(mu2, np.diag(s2), 10))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_commuting_covariances_closed_form():
    # Same eigenvectors, different eigenvalues: d^2 = sum (sqrt l1 - sqrt l2)^2.
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    l1, l2 = rng.uniform(0.0, 2.0, 40), rng.uniform(0.0, 2.0, 40)
    l1[:5] = 0.0  # singular
    a = FeatureStats(np.zeros(40), (q * l1) @ q.T, 10)
    b = FeatureStats(np.zeros(40), (q * l2) @ q.T, 10)
    np.testing.assert_allclose(frechet_distance(a, b), np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2), rtol=1e-9)


def test_one_dimensional():
    a = FeatureStats(np.array([1.0]), np.array([[4.0]]), 5)
    b = FeatureStats(np.array([-2.0]), np.array([[9.0]]), 5)
    assert frechet_distance(a, b) == pytest.approx(9.0 + (2.0 - 3.0) ** 2, rel=1e-14)


def test_identical_is_zero_and_symmetric():
    rng = np.random.default_rng(2)
    feats = rng.standard_normal((500, 64)) * rng.uniform(0.1, 5.0, 64) + 3.0
    a = FeatureStats.from_features(feats)
    assert abs(frechet_distance(a, a)) < 1e-8
    b = FeatureStats.from_features(rng.standard_normal((300, 64)))
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)


def test_rank_deficient_matches_exact_small_problem():
    # n < D: both covariances singular. With centred features X1, X2 the nonzero spectrum of
    # S1 S2 equals that of (X1 X2^T)(X1 X2^T)^T / c, so tr sqrt(S1 S2) = ||X1 X2^T||_* / sqrt(c).
    rng = np.random.default_rng(3)
    x1 = rng.standard_normal((12, 200)) ** 2
    x2 = rng.standard_normal((9, 200)) ** 2 + 0.5
    a, b = FeatureStats.from_features(x1), FeatureStats.from_features(x2)
    x1c, x2c = x1 - x1.mean(0), x2 - x2.mean(0)
    nuclear = np.linalg.svd(x1c @ x2c.T, compute_uv=False).sum()
    expected_tr = nuclear / np.sqrt((12 - 1) * (9 - 1))
    np.testing.assert_allclose(trace_sqrt_product(a.sigma, b.sigma), expected_tr, rtol=1e-9)
    d = frechet_distance(a, b)
    assert np.isfinite(d) and d >= 0
    assert abs(frechet_distance(a, a)) < 1e-8


@pytest.mark.parametrize("shape_a, shape_b", [((12, 200), (9, 200)), ((300, 40), (250, 40))])
def test_features_route_matches_stats_route(shape_a, shape_b):
    rng = np.random.default_rng(6)
    xa = rng.standard_normal(shape_a) ** 2
    xb = rng.standard_normal(shape_b) * 0.7 + 0.3
    via_stats = frechet_distance(FeatureStats.from_features(xa), FeatureStats.from_features(xb))
    np.testing.assert_allclose(frechet_distance_from_features(xa, xb), via_stats, rtol=1e-9)
    assert abs(frechet_distance_from_features(xa, xa)) < 1e-8


def test_streaming_matches_batch_with_large_offset():
    rng = np.random.default_rng(4)
    feats = rng.standard_normal((1000, 16)) + 1e6  # raw sum(x x^T) would cancel catastrophically
    acc = StatsAccumulator()
    for chunk in np.array_split(feats, 7):
        acc.update(torch.from_numpy(chunk))
    s = acc.finalize()
    assert s.n == 1000
    np.testing.assert_allclose(s.mu, feats.mean(0), rtol=1e-14)
    np.testing.assert_allclose(s.sigma, np.cov(feats, rowvar=False), rtol=1e-8, atol=1e-10)


def test_from_features_accepts_float32_tensor():
    feats = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    s = FeatureStats.from_features(feats)
    assert s.mu.dtype == np.float64 and s.sigma.shape == (8, 8)
    np.testing.assert_allclose(s.sigma, np.cov(feats.double().numpy(), rowvar=False), rtol=1e-12)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_load_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(5)
    s = FeatureStats.from_features(rng.standard_normal((20, 6)))
    path = tmp_path / f"stats{suffix}"
    s.save(path)
    t = FeatureStats.load(path)
    assert t.n == 20
    np.testing.assert_array_equal(t.mu, s.mu)
    np.testing.assert_array_equal(t.sigma, s.sigma)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_load_refuses_pickled_npz(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, mu=np.array([object()], dtype=object), sigma=np.eye(1), n=np.array([3]))
    with pytest.raises(ValueError):
        FeatureStats.load(path)


def test_invalid_inputs():
    with pytest.raises(ValueError):
        FeatureStats.from_features(np.ones((1, 4)))  # one sample: no covariance
    with pytest.raises(ValueError):
        FeatureStats.from_features(np.array([[0.0, np.nan], [1.0, 2.0]]))
    a = FeatureStats(np.zeros(3), np.eye(3), 5)
    with pytest.raises(ValueError):
        frechet_distance(a, FeatureStats(np.zeros(4), np.eye(4), 5))
    with pytest.raises(ValueError):
        a.save("stats.pkl")
    with pytest.raises(ValueError):
        frechet_distance_from_features(np.ones((1, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError):
        frechet_distance_from_features(np.ones((5, 3)), np.ones((4, 2)))
