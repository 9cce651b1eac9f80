"""Mixed-precision suggestions on a hand-made report: budget, greedy order, formats."""

from __future__ import annotations

import pytest

from adpdm.analysis import LayerSensitivity, SensitivityReport, StepErrors
from adpdm.analysis.suggest import (
    format_cli,
    format_layer_bits,
    format_layer_bits_cli,
    parse_budget,
    suggest,
    suggest_bops,
)


def _errors(score: float) -> StepErrors:
    return StepErrors([score], score, score)


def _report(wbits: int, abits: int) -> SensitivityReport:
    def layer(name: str, params: int, w: float, a: float) -> LayerSensitivity:
        return LayerSensitivity(name, "conv", params, wbits, abits, [], _errors(w), _errors(a))

    layers = [
        layer("big", 8000, 5.0, 1.0),  # score 6, costs 8000 (8 - w) / 8 bytes
        layer("small", 80, 0.5, 0.5),  # score 1: the best score per byte
        layer("useless", 800, 0.0, 0.0),
        LayerSensitivity("attn", "attention", 0, None, abits, [], None, _errors(9.0)),  # costs no weight bytes
    ]
    return SensitivityReport("m", "p", {"wbits": wbits, "abits": abits}, {}, [0], [1.0], layers, _errors(1.0), [], {},
                             0.0)  # fmt: skip


def test_budget_parsing() -> None:
    assert parse_budget("0.05", 1000) == 50 == parse_budget("5%", 1000) == parse_budget(0.05, 1000)
    assert parse_budget("200KB", 1) == 200_000 and parse_budget("1.5 MiB", 1) == 1_572_864
    assert parse_budget("10B", 1) == 10 and parse_budget("1GB", 1) == 10**9
    for bad in ("2", "abc", "5 parsecs", "-0.1"):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad, 1000)


def test_greedy_by_score_per_byte_within_budget() -> None:
    report = _report(4, 8)  # costs: big 4000 B, small 40 B; activations already 8 bits
    assert suggest(report, "39B").patterns == []
    assert suggest(report, "40B").patterns == ["small"]
    s = suggest(report, "4040B")
    assert s.patterns == ["small", "big"] and s.extra_bytes == 4040 and s.covered == 1.0
    s = suggest(report, "4000B")  # big no longer fits next to small: the greedy keeps small
    assert s.patterns == ["small"] and s.covered == pytest.approx(0.5 / 5.5)


def test_activation_scores_count_below_8_bits() -> None:
    report = _report(6, 6)  # costs: big 2000 B, small 20 B
    s = suggest(report, 0.5)  # 0.5 * 4 * 8880 bytes: everything fits
    assert s.patterns == ["small", "big"] and s.covered == 1.0 and s.extra_bytes == 2020
    assert suggest(_report(8, 8), 1.0).patterns == []  # nothing to gain at 8 bits


def test_bytes_budget_refused_when_only_activations_gain() -> None:
    with pytest.raises(ValueError, match="suggest-by bops"):  # W8A6: every layer would be free
        suggest(_report(8, 6), "1KB")


def test_formats() -> None:
    assert format_cli(["conv_in", "up_blocks.1.*"]) == '--layer-bits "conv_in=W8A8,up_blocks.1.*=W8A8"'
    assert format_cli(["conv_in"], abits=16) == '--layer-bits "conv_in=W8A16"'
    assert format_layer_bits(["a", "b"]) == "layer_bits=(('a', 8, 8), ('b', 8, 8))"
    assert format_layer_bits(["a"]) == "layer_bits=(('a', 8, 8),)"
    assert eval(format_layer_bits(["a"]).split("=", 1)[1]) == (("a", 8, 8),)  # noqa: S307


def _bops_report() -> SensitivityReport:
    def layer(name: str, macs: int, w: float, a: float, wbits: int = 6, abits: int = 6) -> LayerSensitivity:
        return LayerSensitivity(name, "conv", 100, wbits, abits, [], _errors(w), _errors(a), macs)

    layers = [
        layer("full_res", 1000, 0.1, 4.0),  # act -> 8 costs 1000 * 6 * 2 = 12000 BOPs, gains 4
        layer("small", 100, 0.2, 1.0),  # act: 1200 BOPs for 1 (the best per BOP), weight: 1200 for 0.2
        layer("first", 500, 9.0, 9.0, 8, 8),  # already 8 bits: no candidate
        LayerSensitivity("attn", "attention", 0, None, 6, [], None, _errors(9.0)),
    ]
    return SensitivityReport("m", "w6a6", {"wbits": 6, "abits": 6}, {}, [0], [1.0], layers, _errors(1.0), [], {}, 0.0)


def test_bops_budget_raises_one_side_at_a_time_best_per_bop_first() -> None:
    report = _bops_report()  # base: 1000*36 + 100*36 + 500*64 = 71600 BOPs
    s = suggest_bops(report, "0.02")  # 1432 BOPs: the small layer's activations only
    assert s.base_bops == 71_600 and s.budget_bops == 1432
    assert s.layer_bits == [("small", 6, 8)] and s.extra_bops == 1200
    s = suggest_bops(report, "20%")  # 14320: small's activations, then the full-resolution layer's
    assert s.layer_bits == [("full_res", 6, 8), ("small", 6, 8)] and s.extra_bops == 13_200
    # raising small's weights after its activations costs (8 - 6) * 8 per MAC, at its new input bits
    s = suggest_bops(report, 1)
    assert ("small", 8, 8) in s.layer_bits and s.extra_bops == 1200 + 12000 + 1600 + 16000
    assert format_layer_bits_cli(s.layer_bits).startswith('--layer-bits "full_res=W8A8,small=W8A8')
    assert suggest_bops(report, 0).layer_bits == []


def test_bops_budget_needs_macs_and_a_fraction() -> None:
    with pytest.raises(ValueError, match="run `adpdm analyze` again"):
        suggest_bops(_report(6, 6), "10%")  # a report without multiply-accumulates
    for bad in ("abc", "20", "-1"):
        with pytest.raises(ValueError, match="bit-operation budget"):
            suggest_bops(_bops_report(), bad)
