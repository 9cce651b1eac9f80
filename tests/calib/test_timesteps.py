import pytest

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


def test_choose_steps_dispatches_and_refuses_srm():
    assert ts.choose_steps("uniform", 10, 3) == ts.uniform_steps(10, 3)
    assert ts.choose_steps("normal", 10, 3, seed=2) == ts.normal_steps(10, 3, seed=2)
    with pytest.raises(ValueError, match="needs the model"):
        ts.choose_steps("srm", 10, 3)
