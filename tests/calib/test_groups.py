import itertools

import pytest
import torch

from adpdm.calib.groups import partition_from_statistics, range_features, segment_steps
from adpdm.context import step_context
from adpdm.nn.act_quant import ActQuantizer
from adpdm.nn.partition import StepPartition
from adpdm.state import QuantState


def _sse(features, table):
    return sum(float(((features[table == g] - features[table == g].mean(0)) ** 2).sum()) for g in table.unique())


def test_segments_are_the_exact_optimum_over_every_cut():
    torch.manual_seed(0)
    f = torch.randn(9, 3).double()
    for groups in (1, 2, 3, 4):
        table = segment_steps(f, groups)
        assert table.tolist() == sorted(table.tolist()) and set(table.tolist()) == set(range(groups))
        best = min(
            _sse(f, torch.tensor([sum(k >= c for c in cuts) for k in range(9)]))
            for cuts in itertools.combinations(range(1, 9), groups - 1)
        )
        assert _sse(f, table) == pytest.approx(best)


def test_segments_follow_a_jump_in_the_ranges_not_equal_chunks():
    f = torch.tensor([1.0] * 7 + [5.0] * 3)[:, None]  # the range jumps after step 6 of 10
    assert segment_steps(f, 2).tolist() == [0] * 7 + [1] * 3
    assert segment_steps(f, 10).tolist() == list(range(10))
    with pytest.raises(ValueError, match="cannot cut"):
        segment_steps(f, 11)


def _observed(scales):
    part = StepPartition(len(scales), 2)
    q = ActQuantizer(8, False, part, own_partition=True)
    q.state = QuantState.CALIBRATING
    for k, s in enumerate(scales):
        with step_context(k):
            q(torch.linspace(-s, s, 1000)[None])
    return q


def test_partition_from_statistics_sets_the_table_and_refuses_unseen_steps():
    q = _observed([1, 1, 1, 1, 1, 8, 8, 8])  # one quantizer whose range grows 8-fold at step 5
    feats = range_features([q])
    assert feats.shape == (8, 2) and float(feats[:, 1].max() - feats[:, 0].min()) == pytest.approx(1.0)
    tables = partition_from_statistics(torch.nn.Sequential(q))
    assert q.partition.table.tolist() == [0] * 5 + [1] * 3 == next(iter(tables.values()))
    assert q.partition.alpha.argmax(1).tolist() == q.partition.table.tolist()  # the search starts from it
    q.stats.clear()
    with step_context(0):
        q(torch.ones(1, 4))
    with pytest.raises(RuntimeError, match="not observed"):
        range_features([q])
