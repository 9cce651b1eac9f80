import pytest
import torch

from adpdm.tensor.fake_quant import (
    fake_quantize,
    fake_quantize_reference,
    lp_error,
    lp_search_qparams,
    minmax_range,
    mixture_fake_quantize,
    qparams_from_range,
    qrange,
)


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_at_most_2_to_the_b_levels_and_error_bound(bits, symmetric):
    x = torch.randn(4096) * 3
    xmin, xmax = minmax_range(x)
    scale, zero = qparams_from_range(xmin, xmax, bits, symmetric)
    qmin, qmax = qrange(bits, symmetric)
    y = fake_quantize(x, scale, zero, qmin, qmax)
    assert y.unique().numel() <= 2**bits
    # inside the representable range the error is at most half a step
    lo, hi = (qmin - zero) * scale, (qmax - zero) * scale
    inside = (x >= lo) & (x <= hi)
    assert inside.float().mean() > 0.99
    assert ((y - x).abs()[inside] <= scale / 2 + 1e-6).all()


def test_idempotent():
    x = torch.randn(1000)
    scale, zero = qparams_from_range(*minmax_range(x), 4, False)
    y = fake_quantize(x, scale, zero, 0, 15)
    assert torch.equal(fake_quantize(y, scale, zero, 0, 15), y)


def test_straight_through_gradient():
    x = torch.linspace(-2, 2, 101, requires_grad=True)
    scale, zero = torch.tensor(0.01), torch.tensor(128.0)  # range [-1.28, 1.27]
    fake_quantize(x, scale, zero, 0, 255).sum().backward()
    inside = (x > -1.28) & (x < 1.27)
    assert torch.all(x.grad[inside] == 1)
    assert torch.all(x.grad[(x < -1.3) | (x > 1.3)] == 0)


def test_per_channel_equals_per_tensor_channel_by_channel():
    w = torch.randn(6, 3, 3, 3) * torch.arange(1, 7).view(6, 1, 1, 1)
    scale, zero = qparams_from_range(*minmax_range(w, channel_axis=0), 4, False)
    y = fake_quantize(w, scale, zero, 0, 15)
    for c in range(6):
        s, z = qparams_from_range(*minmax_range(w[c]), 4, False)
        assert torch.equal(y[c], fake_quantize(w[c], s, z, 0, 15))


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("channel_axis", [None, 0])
def test_lp_search_never_worse_than_minmax(bits, channel_axis):
    torch.manual_seed(bits)
    w = torch.randn(16, 64) ** 3  # heavy tails: clipping pays off
    qmin, qmax = qrange(bits, False)
    s0, z0 = qparams_from_range(*minmax_range(w, channel_axis), bits, False)
    s1, z1 = lp_search_qparams(w, bits, False, channel_axis=channel_axis, p=2.4)
    e0 = lp_error(w, fake_quantize(w, s0, z0, qmin, qmax), 2.4, channel_axis)
    e1 = lp_error(w, fake_quantize(w, s1, z1, qmin, qmax), 2.4, channel_axis)
    assert torch.all(e1 <= e0)
    if bits <= 4:
        assert e1.sum() < e0.sum()  # strictly better on heavy tails at low bit widths


def test_zero_is_exactly_representable():
    x = torch.rand(100) * 5 + 1  # all positive: range widened to include 0
    scale, zero = qparams_from_range(*minmax_range(x), 8, False)
    assert fake_quantize(torch.zeros(1), scale, zero, 0, 255).item() == 0.0


def test_qrange_rejects_bad_bits():
    with pytest.raises(ValueError, match="bits"):
        qrange(1, False)


def _grads(fn, x, scale, zero, *extra):
    x, scale, zero = (t.detach().clone().requires_grad_(True) for t in (x, scale, zero))
    extra = [t.detach().clone().requires_grad_(True) for t in extra]
    out = fn(x, scale, zero, *extra)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * g).sum().backward()
    return out.detach(), [t.grad for t in (x, scale, zero, *extra)]


@pytest.mark.parametrize(
    "scale_shape", [(), (4, 1, 1, 1), (1, 3, 1, 1)], ids=["per-tensor", "per-sample", "per-channel"]
)
def test_fused_fake_quantize_matches_the_autograd_definition(scale_shape) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=gen) * 3  # wide enough to be clipped at 4 bits
    scale = torch.rand(scale_shape, generator=gen) * 0.3 + 0.05
    zero = torch.full(scale_shape, 7.3)
    out, grads = _grads(lambda *a: fake_quantize(*a, 0, 15), x, scale, zero)
    ref, ref_grads = _grads(lambda *a: fake_quantize_reference(*a, 0, 15), x, scale, zero)
    assert torch.equal(out, ref)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 4])
def test_mixture_matches_the_sum_of_fake_quantizers(rows: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=gen) * 3
    scales = torch.rand(3, generator=gen) * 0.3 + 0.05
    zeros = torch.tensor([7.0, 8.4, 6.6])
    pi = torch.softmax(torch.randn(rows, 3, generator=gen), dim=1)

    def reference(x, s, z, p):
        shape = (-1, 1, 1, 1)
        return sum(p[:, g].reshape(shape) * fake_quantize_reference(x, s[g], z[g], 0, 15) for g in range(3))

    out, grads = _grads(lambda x, s, z, p: mixture_fake_quantize(x, s, z, p, 0, 15), x, scales, zeros, pi)
    ref, ref_grads = _grads(reference, x, scales, zeros, pi)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_mixture_rejects_mismatched_weights() -> None:
    with pytest.raises(ValueError, match="pi must be"):
        mixture_fake_quantize(torch.zeros(4, 2), torch.ones(3), torch.zeros(3), torch.ones(2, 3) / 3, 0, 15)
