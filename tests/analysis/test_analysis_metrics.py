"""The pure maths of the sensitivity analysis, against numbers computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from adpdm.analysis import metrics
from adpdm.nn.stats import StepStatistics


def test_relative_error_per_row() -> None:
    fp = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # ||fp||^2 = 25, 1
    q = torch.tensor([[3.0, 5.0], [1.0, 0.0]])
    assert metrics.relative_error(q, fp).tolist() == [1 / 25, 0.0]


def test_guided_pairs_branches_by_sample_and_step() -> None:
    # rows in any order: (sample, step, branch) -> value
    keys = [(0, 0, 1), (1, 0, 0), (0, 0, 0), (1, 0, 1), (0, 1, 0), (0, 1, 1)]
    vals = torch.tensor([1.0, 5.0, 3.0, 2.0, 7.0, 4.0]).reshape(-1, 1)
    sample, step, branch = (torch.tensor(c) for c in zip(*keys, strict=True))
    eps, steps = metrics.guided(vals, sample, step, branch, scale=2.0, num_steps=2)
    # u + 2 (c - u): sample 0 step 0: 1 + 2*2 = 5; sample 1 step 0: 2 + 2*3 = 8; sample 0 step 1: 4 + 2*3 = 10
    assert eps.flatten().tolist() == [5.0, 10.0, 8.0]
    assert steps.tolist() == [0, 1, 0]


def test_guided_without_unconditional_rows_is_identity() -> None:
    out = torch.randn(3, 2)
    step = torch.tensor([0, 1, 2])
    eps, steps = metrics.guided(out, torch.arange(3), step, torch.zeros(3, dtype=torch.long), 3.0, 3)
    assert eps is out and steps is step


def test_guided_rejects_unpaired_rows() -> None:
    with pytest.raises(ValueError, match="pairs"):
        metrics.guided(torch.zeros(2, 1), torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([0, 1]), 2.0, 1)


def test_step_means_and_weighted_score() -> None:
    per_step = metrics.step_means(torch.tensor([1.0, 3.0, 4.0]), torch.tensor([0, 0, 2]), 3)
    assert per_step.tolist() == [2.0, 0.0, 4.0]
    # (1 * 2 + 4 * 0 + 0.25 * 4) / (1 + 4 + 0.25) = 3 / 5.25
    assert metrics.weighted_score(per_step, torch.tensor([1.0, 2.0, 0.5])) == pytest.approx(3 / 5.25)


def test_step_ranges_from_statistics() -> None:
    stats = StepStatistics(num_steps=3, reservoir=4096)
    stats.observe(torch.linspace(-1, 1, 1001), 0)
    stats.observe(torch.linspace(-4, 2, 1001), 2)
    r = metrics.step_ranges(stats, percentile=90.0)
    assert r["min"][0] == -1 and r["max"][0] == 1 and r["min"][2] == -4 and r["max"][2] == 2
    assert r["low"][0].item() == pytest.approx(-0.8) and r["high"][2].item() == pytest.approx(1.4)
    assert math.isnan(r["low"][1]) and math.isnan(r["max"][1])  # step 1 was not observed
    assert metrics.range_variation(r["low"], r["high"]) == pytest.approx(3.0)  # widths 1.6 and 4.8
