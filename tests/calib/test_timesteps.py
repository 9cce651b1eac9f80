import pytest
import torch

from adpdm.calib import timesteps as ts


def test_uniform_covers_ends():
    assert ts.uniform_steps(100, 5) == [0, 25, 50, 74, 99]
    assert ts.uniform_steps(10, 10) == list(range(10))


def test_normal_is_biased_to_low_noise_end_and_distinct():
    steps = ts.normal_steps(100, 20, seed=0)
    assert len(steps) == len(set(steps)) == 20
    assert all(0 <= k < 100 for k in steps)
    # t ~ N(0.4K, 0.4K) in the timestep axis: most steps lie in the second half of sampling
    assert sum(k >= 50 for k in steps) > 10


def test_random_is_seeded():
    assert ts.random_steps(50, 5, seed=3) == ts.random_steps(50, 5, seed=3)
    assert len(set(ts.random_steps(50, 50, seed=1))) == 50


def test_mmd_zero_for_the_whole_set():
    f = torch.randn(12, 3, dtype=torch.float64)
    kernel = ts.gaussian_kernel(f, f, ts.median_bandwidth(f))
    assert abs(ts.mmd2(kernel, list(range(12)))) < 1e-12
    assert ts.mmd2(kernel, [0]) > 0


def test_srm_never_selects_twice_and_prefers_risky_steps():
    torch.manual_seed(0)
    k = 30
    f = torch.linspace(0, 1, k)[:, None].double()  # a smooth trajectory
    risk = torch.rand(k)
    res = ts.srm_select(f, risk, 10, gamma=0.0)
    assert len(res.steps) == len(set(res.steps)) == 10
    assert res.steps == sorted(torch.topk(risk, 10).indices.tolist())  # gamma = 0: pure risk


def test_srm_mmd_term_keeps_selection_spread_despite_an_outlier():
    k = 40
    f = torch.linspace(0, 1, k)[:, None].double()
    f[7] = 25.0  # one outlying step ...
    risk = torch.linspace(0, 0.8, k)  # error grows towards the end of sampling
    risk[7] = 1.0  # ... that is also the riskiest one
    greedy = ts.srm_select(f, risk, 8, gamma=0.0)
    balanced = ts.srm_select(f, risk, 8, gamma=1.0)
    assert greedy.steps == [7, 33, 34, 35, 36, 37, 38, 39]  # pure risk piles up
    # the MMD term spreads the selection over the trajectory
    assert balanced.mmd2 < greedy.mmd2
    assert min(s for s in balanced.steps if s != 7) < 15 and max(balanced.steps) >= 30
    assert torch.tensor(balanced.steps).diff().max().item() <= 12


def test_srm_rejects_bad_n():
    with pytest.raises(ValueError):
        ts.srm_select(torch.zeros(5, 2), torch.zeros(5), 6)


def test_normalise_features_handles_nan_and_constants():
    f = torch.tensor([[1.0, float("nan"), 2.0], [3.0, 1.0, 2.0]])
    out = ts.normalise_features(f)
    assert torch.isfinite(out).all() and torch.all(out[:, 2] == 0)
