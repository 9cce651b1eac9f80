import pytest
import torch
import torch.nn.functional as F

from adpdm.tensor.smoothing import channel_absmax, smoothing_factors


def test_factors_leave_the_product_unchanged_and_flatten_the_channels():
    x = torch.randn(4, 6, 5, 5) * torch.tensor([1, 1, 1, 1, 1, 30.0]).reshape(1, 6, 1, 1)  # one wide channel
    w = torch.randn(3, 6, 3, 3)
    a = channel_absmax(x, 1)
    assert torch.equal(a, x.abs().amax(dim=(0, 2, 3)))
    s = smoothing_factors(a, channel_absmax(w, 1), 0.5)
    assert s.shape == (6,) and float(s.log().mean()) == pytest.approx(0.0, abs=1e-5)
    view = s.reshape(1, 6, 1, 1)
    torch.testing.assert_close(F.conv2d(x / view, w * view), F.conv2d(x, w), rtol=1e-4, atol=1e-4)
    spread = lambda t: float(t.max() / t.min())  # noqa: E731
    assert spread(channel_absmax(x / view, 1)) < spread(a) / 3
    flat = smoothing_factors(a, torch.ones(6), 1.0)  # alpha 1: every channel of x / s has the same max
    assert spread(channel_absmax(x / flat.reshape(1, 6, 1, 1), 1)) == pytest.approx(1.0, rel=1e-4)


def test_alpha_must_be_a_strength():
    with pytest.raises(ValueError, match="alpha"):
        smoothing_factors(torch.ones(3), torch.ones(3), 1.5)
