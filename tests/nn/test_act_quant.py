import pytest
import torch

from adpdm import step_context
from adpdm.nn.act_quant import ActQuantizer, SplitActQuantizer
from adpdm.nn.partition import StepPartition, contiguous_table
from adpdm.state import QuantState
from adpdm.tensor.fake_quant import fake_quantize, lp_search_qparams


def _calibrated(groups=3, steps=6, bits=4, reservoir=4096):
    part = StepPartition(steps, groups)
    q = ActQuantizer(bits, False, part, own_partition=True, reservoir=reservoir)
    q.state = QuantState.CALIBRATING
    for k in range(steps):
        with step_context(k):
            q(torch.randn(8, 32) * (k + 1))  # the range grows along the trajectory
    q.init_ranges()
    q.state = QuantState.CALIBRATED
    return q


def test_groups_get_their_own_ranges():
    q = _calibrated()
    assert q.scale[0] < q.scale[1] < q.scale[2]
    assert torch.equal(q.partition.table, contiguous_table(6, 3))


def test_one_hot_alpha_equals_chosen_group():
    q = _calibrated()
    x = torch.randn(4, 32) * 3
    q.state = QuantState.RECONSTRUCTING
    q.partition.searching = True
    with torch.no_grad():
        q.partition.alpha.fill_(-1e4)
        q.partition.alpha[2, 1] = 1e4  # step 2 -> group 1
    with step_context(2):
        mixed = q(x)
    expected = fake_quantize(x, q.scale[1], q.zero_point[1], q.qmin, q.qmax)
    torch.testing.assert_close(mixed, expected)


def test_mixture_is_convex_combination_and_freeze_takes_argmax():
    q = _calibrated()
    x = torch.randn(4, 32) * 3
    q.state = QuantState.RECONSTRUCTING
    q.partition.searching = True
    with torch.no_grad():
        q.partition.alpha.copy_(torch.randn(6, 3))
    pi = q.partition.probs(4)[0]
    outs = [fake_quantize(x, q.scale[g], q.zero_point[g], q.qmin, q.qmax) for g in range(3)]
    with step_context(4):
        torch.testing.assert_close(q(x), sum(p * o for p, o in zip(pi, outs, strict=True)))
    g_star = int(q.partition.alpha[4].argmax())
    q.partition.harden()
    q.freeze()
    with step_context(4):
        torch.testing.assert_close(q(x), outs[g_star])


def test_single_group_equals_ordinary_quantizer_without_step_context():
    q = _calibrated(groups=1, reservoir=1 << 16)
    x = torch.randn(5, 32) * 2
    values = torch.cat([q.stats._slots[k]["values"] for k in range(6)])
    s, z = lp_search_qparams(values, 4, False, xrange=(values.min(), values.max()))
    torch.testing.assert_close(q.scale[0], s.reshape(()))
    assert q(x).unique().numel() <= 16
    torch.testing.assert_close(q(x), fake_quantize(x, s, z, 0, 15))


def test_per_sample_steps_match_per_step_calls():
    q = _calibrated()
    x = torch.randn(6, 32) * 4
    steps = torch.arange(6)
    with step_context(steps):
        batched = q(x)
    for k in range(6):
        with step_context(k):
            torch.testing.assert_close(batched[k : k + 1], q(x[k : k + 1]))


def test_missing_step_context_is_a_clear_error():
    q = _calibrated()
    with pytest.raises(RuntimeError, match="step_context"):
        q(torch.randn(2, 32))
    with step_context(6), pytest.raises(ValueError, match="out of range"):
        q(torch.randn(2, 32))


def test_split_quantizer_uses_two_ranges():
    part = StepPartition(1, 1)
    split = SplitActQuantizer(4, ActQuantizer(8, False, part), ActQuantizer(8, False, part))
    for p in split.parts:
        p.state = QuantState.CALIBRATING
    x = torch.cat([torch.randn(2, 4, 3, 3) * 100, torch.randn(2, 4, 3, 3) * 0.01], dim=1)
    split(x)
    for p in split.parts:
        p.init_ranges()
        p.state = QuantState.CALIBRATED
    y = split(x)
    # the small half keeps its precision: a shared scale would round it all to zero
    assert (y[:, 4:] - x[:, 4:]).abs().max() < 1e-3
    assert split.parts[0].scale[0] > 1000 * split.parts[1].scale[0]


def test_entropy_zero_for_one_hot():
    part = StepPartition(4, 2, init_logit=1e4)
    assert part.entropy().item() < 1e-6
    part.alpha.data.zero_()
    torch.testing.assert_close(part.entropy(), torch.log(torch.tensor(2.0)))


def test_truncated_mixture_mixes_soft_rows_and_takes_the_top_group_of_peaked_rows():
    from adpdm.nn.act_quant import HARD_EPS

    q = _calibrated()
    x = torch.randn(6, 32) * 3
    q.state = QuantState.RECONSTRUCTING
    q.partition.searching = True
    with torch.no_grad():
        q.partition.alpha.copy_(torch.randn(6, 3))
        q.partition.alpha[[1, 4]] = torch.tensor([0.0, 30.0, 0.0])  # steps 1 and 4: peaked on group 1
    pi = q.partition.probs(torch.arange(6))
    assert bool((pi.max(1).values >= 1 - HARD_EPS)[[1, 4]].all()) and int((pi.max(1).values >= 1 - HARD_EPS).sum()) == 2
    outs = torch.stack([fake_quantize(x, q.scale[g], q.zero_point[g], q.qmin, q.qmax) for g in range(3)], -1)
    full = (outs * pi[:, None, :]).sum(-1)
    x.requires_grad_(True)
    with step_context(torch.arange(6)):
        y = q(x)
    torch.testing.assert_close(y, full, atol=HARD_EPS * 10, rtol=0)
    torch.testing.assert_close(y[[1, 4]], outs[[1, 4], :, 1])
    y.square().sum().backward()  # gradients reach x, the scales and the alpha of the soft rows
    assert x.grad is not None and q.scale.grad is not None and q.scale.grad.abs().sum() > 0
    assert q.partition.alpha.grad[[0, 2, 3, 5]].abs().sum() > 0
