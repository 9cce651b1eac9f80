"""Paired tables of the four-bit study: grouped weight scales and smoothing together at W4A8, smoothing at W4A6.
PSNR against FP per calibration draw, from this study's results and those of studies/weight-groups and
studies/smoothing (same settings and validation noise).

Usage: PYTHONPATH=. .venv/bin/python studies/four-bit/summary.py
"""

import json
import statistics as st
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SOURCES = ("studies/four-bit/results/smooth_{m}.json", "studies/four-bit/results/plain_{m}.json",
           "studies/weight-groups/results/{m}.json", "studies/smoothing/results/smooth_{m}.json")  # fmt: skip
PAIRS = (("w4g64a8-smooth", "w4g64a8"), ("w4g64a8-smooth", "w4a8-smooth"), ("w4a6-smooth", "w4a6"))

table: dict[tuple[str, str, int], float] = {}
for method in ("adpdm", "qdiffusion"):
    for source in SOURCES:
        path = ROOT / source.format(m=method)
        if path.is_file():
            for r in json.loads(path.read_text())["rows"]:
                table.setdefault((r["method"], r["preset"], r["draw"]), r["psnr"])


def fmt(values: list[float], signed: bool = False) -> str:
    return " / ".join(f"{v:+.2f}" if signed else f"{v:.2f}" for v in values)


print("| method | row | against | row per draw (mean) | against per draw (mean) | difference | mean, draws up |")
print("|---|---|---|---|---|---|---|")
for method in ("adpdm", "qdiffusion"):
    for a, b in PAIRS:
        draws = [d for d in (1, 2, 3, 4) if (method, a, d) in table and (method, b, d) in table]
        if not draws:
            continue
        x, y = [table[(method, a, d)] for d in draws], [table[(method, b, d)] for d in draws]
        diff = [p - q for p, q in zip(x, y, strict=True)]
        print(
            f"| {method} | {a} | {b} | {fmt(x)} ({st.mean(x):.2f}) | {fmt(y)} ({st.mean(y):.2f}) "
            f"| {fmt(diff, True)} | {st.mean(diff):+.2f}, {sum(v > 0 for v in diff)}/{len(diff)} |"
        )
for preset in ("w4g64a8-smooth", "w4a6", "w4a6-smooth"):
    draws = [d for d in (1, 2, 3, 4) if ("adpdm", preset, d) in table and ("qdiffusion", preset, d) in table]
    if draws:
        diff = [table[("adpdm", preset, d)] - table[("qdiffusion", preset, d)] for d in draws]
        print(
            f"adpdm minus qdiffusion, {preset}: {fmt(diff, True)} (mean {st.mean(diff):+.2f}, "
            f"{sum(v > 0 for v in diff)}/{len(diff)} ahead)"
        )
