import pytest
import torch

from adpdm.nn.weight_quant import WeightQuantizer
from adpdm.tensor.grouping import block_rows, expand_blocks


@pytest.mark.parametrize("shape", [(5, 12, 3, 3), (5, 12), (4, 7, 1, 1)])
def test_blocks_round_trip(shape):
    w = torch.randn(shape)
    rows = block_rows(w, 4)
    blocks = -(-shape[1] // 4)
    assert rows.shape == (shape[0] * blocks * (rows.numel() // (shape[0] * blocks * 4)), 4)
    # each row holds 4 consecutive input channels of one output channel and kernel position
    per_block = rows.reshape(shape[0], blocks, *shape[2:], 4).movedim(-1, 2).reshape(shape[0], blocks * 4, *shape[2:])
    assert torch.equal(per_block[:, : shape[1]], w)
    assert torch.equal(per_block[:, shape[1] :], torch.zeros_like(per_block[:, shape[1] :]))  # zero padding


def test_expand_blocks_trims_the_last_block():
    t = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(expand_blocks(t, 4, 7)[1], torch.tensor([2.0] * 4 + [3.0] * 3))


@pytest.mark.parametrize("init", ["lp", "minmax"])
def test_grouped_scales_fit_each_block(init):
    torch.manual_seed(0)
    w = torch.randn(8, 64, 3, 3)
    w[:, :8] *= 20  # one block of large channels
    per_channel, grouped = WeightQuantizer(4, init=init), WeightQuantizer(4, init=init, group_size=16)
    for q in (per_channel, grouped):
        q.init_range(w)
    assert grouped.scale.shape == (8, 4, 3, 3) == grouped.qparam_shape(w.shape)
    assert per_channel.scale.shape == (8, 1, 1, 1)
    small = slice(16, None)  # blocks without the large channels keep a fine scale
    err = lambda q: (q(w) - w)[:, small].pow(2).mean()  # noqa: E731
    assert err(grouped) < 0.05 * err(per_channel)
    codes = grouped.codes(w)
    assert codes.min() >= 0 and codes.max() <= 15
    assert torch.equal(grouped.dequantize(codes), grouped(w))


def test_grouped_rounding_modes_agree_with_nearest():
    w = torch.randn(6, 20)
    q = WeightQuantizer(4, group_size=8)
    q.init_range(w)
    nearest = q.codes(w)
    q.set_nearest(w)
    assert torch.equal(q.codes(w), nearest)
    q.enable_rounding(w, "sign")
    assert torch.equal(q.codes(w), nearest)  # SignRound starts at v = 0


def test_bad_group_size():
    with pytest.raises(ValueError, match="group_size"):
        WeightQuantizer(4, group_size=0)
