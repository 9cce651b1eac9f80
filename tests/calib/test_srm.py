import pytest
import torch

from adpdm.calib import srm


def test_mmd_zero_for_the_whole_set():
    f = torch.randn(12, 3, dtype=torch.float64)
    kernel = srm.gaussian_kernel(f, f, srm.median_bandwidth(f))
    assert abs(srm.mmd2(kernel, list(range(12)))) < 1e-12
    assert srm.mmd2(kernel, [0]) > 0


def test_srm_never_selects_twice_and_prefers_risky_steps():
    torch.manual_seed(0)
    k = 30
    f = torch.linspace(0, 1, k)[:, None].double()  # a smooth trajectory
    risk = torch.rand(k)
    res = srm.srm_select(f, risk, 10, gamma=0.0)
    assert len(res.steps) == len(set(res.steps)) == 10
    assert res.steps == sorted(torch.topk(risk, 10).indices.tolist())  # gamma = 0: pure risk


def test_srm_mmd_term_keeps_selection_spread_despite_an_outlier():
    k = 40
    f = torch.linspace(0, 1, k)[:, None].double()
    f[7] = 25.0  # one outlying step ...
    risk = torch.linspace(0, 0.8, k)  # error grows towards the end of sampling
    risk[7] = 1.0  # ... that is also the riskiest one
    greedy = srm.srm_select(f, risk, 8, gamma=0.0)
    balanced = srm.srm_select(f, risk, 8, gamma=1.0)
    assert greedy.steps == [7, 33, 34, 35, 36, 37, 38, 39]  # pure risk piles up
    # the MMD term spreads the selection over the trajectory
    assert balanced.mmd2 < greedy.mmd2
    assert min(s for s in balanced.steps if s != 7) < 15 and max(balanced.steps) >= 30
    assert torch.tensor(balanced.steps).diff().max().item() <= 12


def test_srm_rejects_bad_n():
    with pytest.raises(ValueError):
        srm.srm_select(torch.zeros(5, 2), torch.zeros(5), 6)


def test_normalise_features_handles_nan_and_constants():
    f = torch.tensor([[1.0, float("nan"), 2.0], [3.0, 1.0, 2.0]])
    out = srm.normalise_features(f)
    assert torch.isfinite(out).all() and torch.all(out[:, 2] == 0)
