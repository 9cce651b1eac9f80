"""Paired statistics over calibration draws, on hand-computed cases."""

import math

import pytest

from adpdm.eval.paired import Spread, paired_record, summarize


def test_spread_is_the_sample_standard_deviation():
    s = Spread.of([1.0, 2.0, 3.0, 6.0])
    assert (s.n, s.mean, s.min, s.max) == (4, 3.0, 1.0, 6.0)
    assert math.isclose(s.std, math.sqrt((4 + 1 + 0 + 9) / 3))
    assert Spread.of([5.0]).std == 0.0
    with pytest.raises(ValueError):
        Spread.of([])


def test_a_consistent_lead_is_ahead():
    # differences 1, 2, 3: mean 2 > sd 1
    rec = paired_record([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    assert (rec.wins, rec.losses, rec.ties, rec.n) == (3, 0, 0, 3)
    assert (rec.mean_diff, rec.sd_diff, rec.verdict) == (2.0, 1.0, "ahead")


def test_a_difference_inside_the_spread_is_a_tie():
    # differences +4, -2, +1, -1: mean 0.5 < sd 2.65, although 2 of 4 draws are wins
    rec = paired_record([14.0, 8.0, 11.0, 9.0], [10.0, 10.0, 10.0, 10.0])
    assert (rec.wins, rec.losses) == (2, 2)
    assert math.isclose(rec.sd_diff, math.sqrt((3.5**2 + 2.5**2 + 0.5**2 + 1.5**2) / 3))
    assert rec.verdict == "tie"


def test_lower_is_better_metrics_flip_the_sign():
    rec = paired_record([5.0, 6.0, 7.0], [10.0, 10.0, 10.0], higher_is_better=False)  # FID: lower wins
    assert (rec.wins, rec.mean_diff, rec.verdict) == (3, 4.0, "ahead")
    behind = paired_record([10.0, 10.0, 10.0], [5.0, 6.0, 7.0], higher_is_better=False)
    assert (behind.losses, behind.verdict) == (3, "behind")


def test_one_draw_is_always_a_tie_and_equal_values_are_ties():
    assert paired_record([20.0], [10.0]).verdict == "tie"
    rec = paired_record([1.0, 2.0], [1.0, 1.0])
    assert (rec.wins, rec.ties) == (1, 1)
    with pytest.raises(ValueError):
        paired_record([1.0], [1.0, 2.0])


def test_summarize_pairs_on_common_draws_only():
    rows = [{"model": "m", "preset": "w8a8", "method": "fp32", "draw": None, "psnr": None}]
    rows += [
        {"model": "m", "preset": "w8a8", "method": "a", "draw": d, "psnr": 20.0 + d, "fid_fp": 1.0} for d in (1, 2, 3)
    ]
    rows += [{"model": "m", "preset": "w8a8", "method": "b", "draw": d, "psnr": 20.0, "fid_fp": 2.0} for d in (2, 3, 4)]
    out = {s["method"]: s for s in summarize(rows)}
    assert set(out) == {"a", "b"}
    assert out["a"]["psnr"]["mean"] == 22.0 and out["a"]["draws"] == [1, 2, 3]
    vs_b = out["a"]["paired"]["b"]
    assert vs_b["psnr"]["n"] == 2 and vs_b["psnr"]["wins"] == 2 and vs_b["psnr"]["mean_diff"] == 2.5
    assert vs_b["fid_fp"]["wins"] == 2  # lower FID wins
    assert out["b"]["paired"]["a"]["psnr"]["losses"] == 2
