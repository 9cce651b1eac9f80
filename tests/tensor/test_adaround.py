import torch
from four_bit import four_bit_weight

from adpdm.tensor import adaround


def test_init_reproduces_fp_weights():
    w, scale, zero = four_bit_weight()
    v = adaround.init_logits(w, scale)
    codes = adaround.soft_codes(torch.floor(w / scale), v, zero, 0, 15)
    # elements the grid can represent (zero-point rounding may push an extreme just outside)
    inside = (w / scale + zero >= 0) & (w / scale + zero <= 15)
    assert inside.float().mean() > 0.9
    err = ((codes - zero) * scale - w).abs()
    assert torch.all(err[inside] <= 1e-3 * scale.expand_as(w)[inside])


def test_hard_rounding_is_floor_or_ceil():
    w, scale, zero = four_bit_weight()
    v = torch.randn_like(w) * 3
    codes = adaround.hard_codes(torch.floor(w / scale), v, zero, 0, 15)
    fl = torch.clamp(torch.floor(w / scale) + zero, 0, 15)
    ce = torch.clamp(torch.ceil(w / scale) + zero, 0, 15)
    assert torch.all((codes == fl) | (codes == ce))


def test_regularizer_zero_iff_binary():
    assert adaround.rounding_regularizer(torch.full((10,), 20.0), beta=2).item() == 0.0
    assert adaround.rounding_regularizer(torch.zeros(10), beta=2).item() > 9.0  # h = 0.5


def test_beta_schedule():
    sched = adaround.BetaSchedule(iters=100)
    assert sched(0) is None and sched(19) is None
    assert sched(20) == 20.0 and abs(sched(100) - 2.0) < 1e-9
    assert sched(50) > sched(80)
