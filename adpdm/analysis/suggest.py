"""Mixed precision from a sensitivity report: which layers to keep at 8 bits within a size budget.

BUDGET is the number of weight bytes allowed on top of the preset's all-low-bit weights, given as

* a fraction of the FP32 weight bytes of the quantized layers (``0.05``: 5 % of the FP32 size;
  ``5%`` is the same), or
* bytes with a unit: ``B``, ``KB`` / ``MB`` / ``GB`` (powers of 1000) or ``KiB`` / ``MiB`` / ``GiB``.

Keeping a layer of ``n`` weights at 8 bits instead of ``w`` costs ``n (8 - w) / 8`` bytes and
removes (about) its weight and activation scores. The greedy picks the best score per extra byte
first, skips what no longer fits, and ignores layers with nothing to gain (already 8 bits).
Attention blocks (their Q, K, V quantizers) cost no weight bytes and are not suggested: the
budget counts weight bytes only, so they would always be free; the report ranks them anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .report import LayerSensitivity, SensitivityReport

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
KEEP_BITS = 8


@dataclass
class Suggestion:
    """Layers to keep at 8 bits, in the order the greedy picked them.

    Args:
        patterns: fnmatch patterns (exact layer names) of the layers to keep.
        extra_bytes: weight bytes they add over the all-low-bit model.
        budget_bytes: the budget in bytes.
        covered: fraction of the total score that keeping every candidate would remove, removed by these.
        abits: the preset's activation bits (16 stays 16 in :func:`format_layer_bits`).
    """

    patterns: list[str]
    extra_bytes: int
    budget_bytes: int
    covered: float
    abits: int


def fp32_weight_bytes(report: SensitivityReport) -> int:
    """FP32 bytes of the quantized layers' weights."""
    return 4 * sum(u.params for u in report.layers)


def parse_budget(budget: str | float, fp32_bytes: int) -> int:
    """The budget in bytes: a fraction of ``fp32_bytes`` (``0.05``, ``"5%"``) or bytes with a unit (``"200KB"``)."""
    if isinstance(budget, (int, float)):
        text = str(budget)
    else:
        text = budget.strip().lower().replace(" ", "")
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([a-z%]*)", text)
    if match is None or match.group(2) not in (*_UNITS, "", "%"):
        raise ValueError(f"budget {budget!r}: give a fraction of the FP32 weight bytes (0.05 or 5%) or bytes with "
                         "a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 200KB")  # fmt: skip
    value, unit = float(match.group(1)), match.group(2)
    if unit in _UNITS:
        return int(value * _UNITS[unit])
    fraction = value / 100 if unit == "%" else value
    if fraction > 1:
        raise ValueError(f"budget {budget!r} is a fraction above 1; for bytes add a unit, e.g. {value:g}KB")
    return int(fraction * fp32_bytes)


def _gain_and_cost(u: LayerSensitivity) -> tuple[float, int]:
    if u.kind == "attention" or u.wbits is None:
        return 0.0, 0
    gain = (u.score("weight") if u.wbits < KEEP_BITS else 0.0) + (
        u.score("act") if u.abits is not None and u.abits < KEEP_BITS else 0.0
    )
    return gain, u.params * max(0, KEEP_BITS - u.wbits) // 8


def suggest(report: SensitivityReport, budget: str | float) -> Suggestion:
    """Layers to keep at 8 bits (weights and activations) within ``budget`` (see the module docstring).

    Raises ``ValueError`` when every candidate already has 8-bit weights (W8A6, W8A4): keeping its
    activations at 8 bits costs no weight bytes, so a bytes budget would take them all.

    Example::

        s = suggest(report, "0.05")
        print(format_cli(s.patterns, s.abits))
    """
    budget_bytes = parse_budget(budget, fp32_weight_bytes(report))
    candidates = [(u.name, *_gain_and_cost(u)) for u in report.layers]
    candidates = [c for c in candidates if c[1] > 0]
    if candidates and all(cost == 0 for _, _, cost in candidates):
        raise ValueError(
            "a weight-bytes budget cannot choose here: every layer with something to gain already has 8-bit weights "
            "and gains only in its activations, which cost no bytes; budget bit-operations instead "
            "(suggest_bops, or --suggest-by bops on the command line)"
        )
    candidates.sort(key=lambda c: (-c[1] / max(c[2], 1), -c[1]))  # best score per extra byte first
    picked, used, gained = [], 0, 0.0
    for name, gain, cost in candidates:
        if used + cost <= budget_bytes:
            picked.append(name)
            used += cost
            gained += gain
    total = sum(c[1] for c in candidates)
    abits = int(report.quant_config.get("abits", KEEP_BITS))
    return Suggestion(picked, used, budget_bytes, gained / total if total else 0.0, abits)


def format_cli(patterns: list[str], abits: int = KEEP_BITS) -> str:
    """The suggestion as the option of ``adpdm quantize``: ``--layer-bits "conv_in=W8A8,conv_out=W8A8"``."""
    keep_a = abits if abits >= 16 else KEEP_BITS
    return f'--layer-bits "{",".join(f"{p}=W{KEEP_BITS}A{keep_a}" for p in patterns)}"'


def format_layer_bits(patterns: list[str], abits: int = KEEP_BITS) -> str:
    """The suggestion as ``QuantConfig.layer_bits``: a tuple of ``(pattern, wbits, abits)``."""
    keep_a = abits if abits >= 16 else KEEP_BITS
    items = ", ".join(f"({p!r}, {KEEP_BITS}, {keep_a})" for p in patterns)
    return f"layer_bits=({items}{',' if len(patterns) == 1 else ''})"


@dataclass
class BopsSuggestion:
    """Layers whose weights or input activations go to 8 bits, within a bit-operation budget.

    Args:
        layer_bits: ``(name, wbits, abits)`` of every changed layer, for ``QuantConfig.layer_bits``.
        extra_bops: bit-operations per sample they add over the preset.
        budget_bops: the budget.
        base_bops: bit-operations per sample of the preset (the layers of the report).
        covered: fraction of the total score that every candidate would remove, removed by these.
    """

    layer_bits: list[tuple[str, int, int]]
    extra_bops: int
    budget_bops: int
    base_bops: int
    covered: float


def _bops_candidates(report: SensitivityReport) -> list[tuple[str, str, float]]:
    """(layer, "weight" | "act", score removed by raising that side to 8 bits) of every layer with macs."""
    out = []
    for u in report.layers:
        if u.kind == "attention" or u.wbits is None or u.macs <= 0:
            continue
        if u.abits is not None and u.abits < KEEP_BITS and u.act is not None:
            out.append((u.name, "act", u.score("act")))
        if u.wbits < KEEP_BITS and u.weight is not None:
            out.append((u.name, "weight", u.score("weight")))
    return [c for c in out if c[2] > 0]


def suggest_bops(report: SensitivityReport, budget: str | float) -> BopsSuggestion:
    """Raise the weights or the input activations of the most sensitive layers to 8 bits, each side on its
    own, within ``budget`` extra bit-operations: a fraction of the preset's (``0.1`` or ``"10%"``).

    Raising a layer's activations from ``a`` to 8 bits costs ``M w (8 - a)`` bit-operations (``M`` its
    multiply-accumulates), its weights ``M (8 - w) a``, each at the layer's current other side. The
    greedy picks the best score per bit-operation first and skips what no longer fits. Reports made
    before 0.7.0 have no multiply-accumulates: run ``adpdm analyze`` again.

    Example::

        s = suggest_bops(report, "10%")
        cfg = QuantConfig.preset("w6a6", layer_bits=tuple(s.layer_bits))
    """
    layers = {u.name: u for u in report.layers if u.kind != "attention" and u.wbits is not None}
    base = sum(u.macs * u.wbits * (u.abits or 16) for u in layers.values())
    if base == 0:
        raise ValueError("the report has no multiply-accumulates (made before 0.7.0): run `adpdm analyze` again")
    text = str(budget).strip().rstrip("%")
    try:
        fraction = float(text) / (100 if str(budget).strip().endswith("%") else 1)
    except ValueError:
        raise ValueError(f"bit-operation budget {budget!r}: give a fraction of the preset's (0.1 or 10%)") from None
    if not 0 <= fraction <= 10:
        raise ValueError(f"bit-operation budget {budget!r} must be a fraction in [0, 10] of the preset's")
    budget_bops = int(fraction * base)
    bits = {name: [u.wbits, u.abits or 16] for name, u in layers.items()}
    candidates = _bops_candidates(report)

    def cost(name: str, side: str) -> int:
        w, a = bits[name]
        return layers[name].macs * ((KEEP_BITS - w) * a if side == "weight" else w * (KEEP_BITS - a))

    candidates.sort(key=lambda c: (-c[2] / max(cost(c[0], c[1]), 1), -c[2]))
    used, gained = 0, 0.0
    for name, side, gain in candidates:
        extra = cost(name, side)
        if used + extra <= budget_bops:
            bits[name][0 if side == "weight" else 1] = KEEP_BITS
            used += extra
            gained += gain
    changed = [(n, w, a) for n, (w, a) in bits.items() if (w, a) != (layers[n].wbits, layers[n].abits or 16)]
    total = sum(c[2] for c in candidates)
    return BopsSuggestion(changed, used, budget_bops, base, gained / total if total else 0.0)


def format_layer_bits_cli(layer_bits: list[tuple[str, int, int]]) -> str:
    """``--layer-bits "NAME=W6A8,..."`` for ``adpdm quantize``."""
    return f'--layer-bits "{",".join(f"{n}=W{w}A{a}" for n, w, a in layer_bits)}"'
