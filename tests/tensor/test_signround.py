import torch
from four_bit import four_bit_weight

from adpdm.tensor import signround
from adpdm.tensor.fake_quant import quantize


def test_zero_offset_is_round_to_nearest():
    w, scale, zero = four_bit_weight()
    v = torch.zeros_like(w)
    assert torch.equal(signround.codes(w, scale, zero, v, 0, 15), quantize(w, scale, zero, 0, 15))


def test_codes_stay_floor_or_ceil_for_any_offset():
    w, scale, zero = four_bit_weight()
    v = (torch.rand_like(w) - 0.5).clamp(-0.5, 0.5)
    v[0] = 0.5
    v[1] = -0.5
    codes = signround.codes(w, scale, zero, v, 0, 15)
    fl = torch.clamp(torch.floor(w / scale) + zero, 0, 15)
    assert torch.all((codes == fl) | (codes == (fl + 1).clamp_max(15)))


def test_gradient_reaches_the_offset_straight_through():
    w, scale, zero = four_bit_weight()
    v = torch.zeros_like(w, requires_grad=True)
    signround.fake_quantize(w, scale, zero, v, 0, 15).sum().backward()
    inside = (torch.round(w / scale) + zero >= 0) & (torch.round(w / scale) + zero <= 15)
    expected = torch.where(inside, scale.expand_as(w), torch.zeros_like(w))  # d(w_hat)/dv = s in range
    torch.testing.assert_close(v.grad, expected)


def test_sign_step_moves_against_the_gradient_and_clips():
    v = torch.tensor([0.0, 0.45, -0.45, 0.1])
    signround.sign_step(v, torch.tensor([1.0, -1.0, 1.0, 0.0]), lr=0.1)
    torch.testing.assert_close(v, torch.tensor([-0.1, 0.5, -0.5, 0.1]))
