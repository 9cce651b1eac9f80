import math

import numpy as np
import pytest
import torch

from adpdm.eval.frechet import FeatureStats, frechet_distance
from adpdm.eval.metrics import (
    background_haze,
    background_speckle,
    class_accuracy,
    confusions,
    fid_from_features,
    mean_psnr,
    psnr,
    summarize_psnr,
    weakest_classes,
)


def test_psnr_pinned_values():
    a = torch.zeros(3, 1, 4, 4)
    b = a.clone()
    b[1] += 2**-6  # exact in float32: MSE 2^-12 -> 10 log10(4 * 4096) dB
    b[2, 0, 0, 0] = 2.0  # one pixel off by 2 of 16 -> MSE 0.25 -> 10 log10(16) dB
    p = psnr(a, b)
    assert p.shape == (3,) and p.dtype == torch.float64
    assert math.isinf(p[0]) and p[0] > 0
    assert p[1].item() == pytest.approx(10 * math.log10(16384.0), abs=1e-12)
    assert p[2].item() == pytest.approx(10 * math.log10(16.0), abs=1e-12)


def test_psnr_data_range_and_symmetry():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 3, 8, 8, generator=g), torch.rand(5, 3, 8, 8, generator=g)
    torch.testing.assert_close(psnr(a, b), psnr(b, a))
    # Halving data_range lowers PSNR by 20 log10(2) dB.
    torch.testing.assert_close(psnr(a, b, data_range=1.0), psnr(a, b) - 20 * math.log10(2.0))


def test_psnr_tiny_float32_difference_is_finite():
    a = torch.full((1, 1, 8, 8), 0.5)
    b = a + torch.finfo(torch.float32).eps  # one ulp-ish: MSE ~ 1.4e-14
    p = psnr(a, b)
    assert torch.isfinite(p).all() and p.item() > 140


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError):
        psnr(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))


def test_mean_psnr_inf_handling():
    v = torch.tensor([30.0, math.inf, 50.0])
    assert mean_psnr(v) == pytest.approx((30 + 100 + 50) / 3)
    assert mean_psnr(v, cap=None) == pytest.approx(40.0)
    assert mean_psnr(torch.tensor([math.inf, math.inf]), cap=None) == math.inf
    assert mean_psnr(torch.tensor([math.inf]), cap=60.0) == 60.0
    with pytest.raises(ValueError):
        mean_psnr(torch.tensor([]))
    s = summarize_psnr(v)
    assert (s.num_identical, s.n, s.median, s.mean_finite) == (1, 3, 50.0, pytest.approx(40.0))


def test_fid_from_features_accepts_arrays_tensors_and_stats():
    rng = np.random.default_rng(0)
    fa, fb = rng.standard_normal((40, 10)), rng.standard_normal((30, 10)) + 0.5
    expected = frechet_distance(FeatureStats.from_features(fa), FeatureStats.from_features(fb))
    assert fid_from_features(fa, fb) == pytest.approx(expected, rel=1e-12)
    assert fid_from_features(torch.from_numpy(fa), FeatureStats.from_features(fb)) == pytest.approx(expected, rel=1e-12)
    assert fid_from_features(fa, fa) == pytest.approx(0.0, abs=1e-8)
    # N > D takes the statistics route, N <= D the Gram route; both agree.
    wide_a, wide_b = rng.standard_normal((8, 30)), rng.standard_normal((6, 30))
    assert fid_from_features(wide_a, wide_b) == pytest.approx(
        fid_from_features(FeatureStats.from_features(wide_a), wide_b), rel=1e-9
    )


def test_evaluator_reuses_the_fp_inception_statistics_of_the_same_unchanged_tensor(monkeypatch):
    import adpdm.eval.evaluate as ev

    calls = []
    monkeypatch.setattr(ev, "image_stats", lambda net, images, progress=True: calls.append(1) or len(calls))
    evaluator = ev.Evaluator(ev.EvalConfig(inception=False))
    evaluator.inception = object()  # stands in for the network: image_stats is faked
    fp = torch.zeros(4, 1, 8, 8)
    assert evaluator.fp_inception_stats(fp) == 1
    assert evaluator.inception_stats(torch.ones(4, 1, 8, 8)) == 2  # a method's samples: never cached
    assert evaluator.fp_inception_stats(fp) == 1  # the FP samples: computed once
    assert evaluator.fp_inception_stats(fp.clone()) == 3  # equal values, another tensor: computed
    other = torch.zeros(4, 1, 8, 8)
    assert evaluator.fp_inception_stats(other) == 4
    other.add_(1.0)  # changed in place: computed again
    assert evaluator.fp_inception_stats(other) == 5


def _digits(n: int = 4, size: int = 16) -> torch.Tensor:
    """Black images with a bright bar in the middle."""
    x = torch.full((n, 1, size, size), -1.0)
    x[:, :, 4:12, 7:9] = 1.0
    return x


def test_background_haze_counts_gray_on_the_black_background():
    fp = _digits()
    assert background_haze(fp, fp) == 0.0
    gray = fp.clone()
    gray[gray < 0] = -0.9  # the whole background lifted by 0.1
    assert background_haze(gray, fp) == pytest.approx(0.1, abs=1e-6)
    # zero-mean noise clipped at -1 leaves its upper half: RMS above the floor of a half-normal = sigma / sqrt(2)
    g = torch.Generator().manual_seed(0)
    noisy = (_digits(64, 32) + 0.1 * torch.randn(64, 1, 32, 32, generator=g)).clamp(-1, 1)
    assert background_haze(noisy, _digits(64, 32)) == pytest.approx(0.1 / math.sqrt(2), rel=0.03)


def test_background_haze_ignores_strokes_near_the_reference_ink():
    fp = _digits()
    moved = fp.roll(2, dims=3)  # the bar moved by two pixels: an error PSNR counts, not haze
    assert background_haze(moved, fp) == 0.0
    assert background_haze(moved, fp, margin=0) > 0.0


def test_background_speckle_is_the_spread_within_each_image_not_a_lift():
    fp = _digits()
    assert background_speckle(fp, fp) == 0.0
    lifted = fp.clone()
    lifted[lifted < 0] = -0.9  # a uniform gray floor: haze, but no speckle
    assert background_haze(lifted, fp) == pytest.approx(0.1, abs=1e-6)
    assert background_speckle(lifted, fp) == pytest.approx(0.0, abs=1e-12)
    # zero-mean noise clipped at -1: the spread of a half-normal's positive part, sigma * sqrt(1/2 - 1/(2 pi))
    g = torch.Generator().manual_seed(0)
    sigma = 0.1
    noisy = (_digits(64, 32) + sigma * torch.randn(64, 1, 32, 32, generator=g)).clamp(-1, 1)
    expected = sigma * math.sqrt(0.5 - 0.5 / math.pi)
    assert background_speckle(noisy, _digits(64, 32)) == pytest.approx(expected, rel=0.03)


def test_background_speckle_ignores_moved_strokes_and_checks_its_inputs():
    fp = _digits()
    assert background_speckle(fp.roll(2, dims=3), fp) == 0.0
    assert background_speckle(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)) is None  # no black floor
    with pytest.raises(ValueError, match="one shape"):
        background_speckle(fp[:2], fp)


def test_background_haze_is_none_without_a_black_floor_and_checks_shapes():
    natural = torch.rand(2, 3, 16, 16) * 2 - 1
    assert background_haze(natural, natural) is None
    with pytest.raises(ValueError, match="one shape"):
        background_haze(_digits(2), _digits(3))
    with pytest.raises(ValueError, match="margin"):
        background_haze(_digits(), _digits(), margin=-1)


def test_class_accuracy_per_intended_label_and_the_weakest():
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 7])
    pred = torch.tensor([0, 1, 1, 1, 9, 1, 7])
    acc = class_accuracy(pred, labels)
    assert acc == {0: 0.5, 1: 0.75, 7: 1.0}  # only the labels that occur, in label order
    assert weakest_classes(acc, top=2) == [(0, 0.5), (1, 0.75)]
    assert weakest_classes({3: 0.5, 2: 0.5}) == [(2, 0.5), (3, 0.5)]  # ties by label
    with pytest.raises(ValueError, match=r"two \(N,\) tensors"):
        class_accuracy(pred[:3], labels)


def test_confusions_count_the_wrong_pairs_most_frequent_first():
    labels = torch.tensor([9, 9, 9, 2, 2, 5])
    pred = torch.tensor([7, 7, 3, 3, 2, 5])
    assert confusions(pred, labels) == [(9, 7, 2), (2, 3, 1), (9, 3, 1)]
    assert confusions(labels, labels) == []
    assert confusions(pred, labels, top=1) == [(9, 7, 2)]
