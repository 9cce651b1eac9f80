"""Mixed-precision suggestions on a hand-made report: budget, greedy order, formats."""

from __future__ import annotations

import pytest

from adpdm.analysis import LayerSensitivity, SensitivityReport, StepErrors
from adpdm.analysis.suggest import format_cli, format_layer_bits, parse_budget, suggest


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


def test_formats() -> None:
    assert format_cli(["conv_in", "up_blocks.1.*"]) == '--layer-bits "conv_in=W8A8,up_blocks.1.*=W8A8"'
    assert format_cli(["conv_in"], abits=16) == '--layer-bits "conv_in=W8A16"'
    assert format_layer_bits(["a", "b"]) == "layer_bits=(('a', 8, 8), ('b', 8, 8))"
    assert format_layer_bits(["a"]) == "layer_bits=(('a', 8, 8),)"
    assert eval(format_layer_bits(["a"]).split("=", 1)[1]) == (("a", 8, 8),)  # noqa: S307
