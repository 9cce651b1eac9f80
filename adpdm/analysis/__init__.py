"""Sensitivity analysis of a quantization preset: which layers and sampling steps carry the error.

Example::

    from adpdm.analysis import AnalyzeConfig, analyze, suggest, worst_table
    from adpdm.models.loading import load_model

    report = analyze(load_model("embedded:mnist"), "w6a6", AnalyzeConfig(num_samples=8, steps=20))
    print(worst_table(report, top=10))
    print(suggest(report, "0.05").patterns)
"""

from .report import ActRange, LayerSensitivity, SensitivityReport, StepErrors, worst_table
from .sensitivity import AnalyzeConfig, ErrorProbe, analyze
from .suggest import BopsSuggestion, Suggestion, format_cli, format_layer_bits, parse_budget, suggest, suggest_bops
from .units import Unit, execution_order, find_units

__all__ = [
    "ActRange",
    "BopsSuggestion",
    "AnalyzeConfig",
    "ErrorProbe",
    "LayerSensitivity",
    "SensitivityReport",
    "StepErrors",
    "Suggestion",
    "Unit",
    "analyze",
    "execution_order",
    "find_units",
    "format_cli",
    "format_layer_bits",
    "parse_budget",
    "suggest",
    "suggest_bops",
    "worst_table",
]
