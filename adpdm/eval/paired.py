"""Statistics of a comparison over several calibration draws: spread, paired record, verdict.

Every method is calibrated on the same N draws (calibration noise seeds) and scored on the same
held-out evaluation noise, so two methods' results on one draw form a pair. A method "wins" a
draw when its metric is better on that draw. The verdict on the mean looks at the paired
differences ``d_i = a_i - b_i`` (oriented so that positive is better for ``a``): ``a`` is ahead
when ``mean(d) > sd(d)``, behind when ``mean(d) < -sd(d)``, and otherwise the difference is
inside the spread between draws: a tie. With one draw there is no spread and the verdict is
always a tie.

Everything here is pure Python over lists of numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

# metric -> True when higher is better
HIGHER_IS_BETTER = {"psnr": True, "accuracy": True, "fid_fp": False, "fid_data": False, "clf_fid_data": False,
                    "clf_fid_fp": False, "haze": False, "speckle": False}  # fmt: skip


@dataclass
class Spread:
    """Mean, sample standard deviation (n - 1; 0 for one value), min and max of ``n`` values."""

    n: int
    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values")
        values = [float(v) for v in values]
        n, mean = len(values), sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        return cls(n, mean, std, min(values), max(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PairedRecord:
    """``a`` against ``b`` over the draws both have, oriented so that positive is better for ``a``.

    Attributes:
        n: draws compared.
        wins, losses, ties: draws where ``a`` is better, worse, exactly equal.
        mean_diff: mean of the paired differences (in the metric's unit, better-is-positive).
        sd_diff: their sample standard deviation (0 for one draw).
        verdict: ``"ahead"``, ``"behind"`` or ``"tie"`` (see the module docstring).
    """

    n: int
    wins: int
    losses: int
    ties: int
    mean_diff: float
    sd_diff: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_record(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True) -> PairedRecord:
    """Compare two methods draw by draw; ``a[i]`` and ``b[i]`` come from the same draw."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same non-zero number of draws, got {len(a)} and {len(b)}")
    sign = 1.0 if higher_is_better else -1.0
    d = [sign * (float(x) - float(y)) for x, y in zip(a, b, strict=True)]
    spread = Spread.of(d)
    if spread.n > 1 and spread.mean > spread.std:
        verdict = "ahead"
    elif spread.n > 1 and spread.mean < -spread.std:
        verdict = "behind"
    else:
        verdict = "tie"
    wins, losses = sum(v > 0 for v in d), sum(v < 0 for v in d)
    return PairedRecord(len(d), wins, losses, len(d) - wins - losses, spread.mean, spread.std, verdict)


def summarize(rows: list[dict[str, Any]], metrics: Sequence[str] = tuple(HIGHER_IS_BETTER)) -> list[dict[str, Any]]:
    """One summary per (model, preset, method) of per-draw rows (keys ``model``, ``preset``,
    ``method``, ``draw`` and the metrics): the spread of every metric present, and the paired
    record against every other method of the same model and preset on their common draws."""
    groups: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        if r.get("method") == "fp32":
            continue
        groups.setdefault((r["model"], r["preset"], r["method"]), {})[r["draw"]] = r
    out = []
    for (model, preset, method), by_draw in groups.items():
        s: dict[str, Any] = {"model": model, "preset": preset, "method": method, "draws": sorted(by_draw)}
        for m in metrics:
            values = [r[m] for r in by_draw.values() if r.get(m) is not None]
            if values:
                s[m] = Spread.of(values).to_dict()
        s["paired"] = {}
        for (m2, p2, other), other_draws in groups.items():
            if (m2, p2) != (model, preset) or other == method:
                continue
            s["paired"][other] = {}
            common = sorted(set(by_draw) & set(other_draws))
            for m in metrics:
                pairs = [(by_draw[d].get(m), other_draws[d].get(m)) for d in common]
                pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
                if pairs:
                    a, b = zip(*pairs, strict=True)
                    s["paired"][other][m] = paired_record(a, b, HIGHER_IS_BETTER.get(m, True)).to_dict()
        out.append(s)
    return out
