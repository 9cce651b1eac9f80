"""Paired table of the smoothing study: PSNR against FP per draw with and without smoothing, per method and preset.

Usage: PYTHONPATH=. .venv/bin/python studies/smoothing/summary.py
"""

import json
import statistics as st
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def rows(path: Path) -> list[dict]:
    return [r for r in json.loads(path.read_text())["rows"] if r["method"] != "fp32"] if path.is_file() else []


table: dict[tuple[str, str, int], float] = {}
for method in ("adpdm", "qdiffusion"):
    sources = [HERE / f"results/plain_{method}.json", HERE / f"results/smooth_{method}.json",
               ROOT / f"studies/weight-groups/results/{method}.json"]  # fmt: skip
    for path in sources:
        for r in rows(path):
            table[(r["method"], r["preset"], r["draw"])] = r["psnr"]
print("| method | preset | plain per draw | smoothed per draw | smoothed minus plain | mean, draws up |")
print("|---|---|---|---|---|---|")
for method in ("adpdm", "qdiffusion"):
    for preset in ("w8a6", "w6a6", "w4a8"):
        draws = [d for d in (1, 2, 3, 4) if (method, preset, d) in table and (method, f"{preset}-smooth", d) in table]
        if not draws:
            continue
        plain = [table[(method, preset, d)] for d in draws]
        smooth = [table[(method, f"{preset}-smooth", d)] for d in draws]
        diff = [b - a for a, b in zip(plain, smooth, strict=True)]
        fmt = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
        up = f"{st.mean(diff):+.2f}, {sum(x > 0 for x in diff)}/{len(diff)}"
        print(
            f"| {method} | {preset} | {fmt(plain)} ({st.mean(plain):.2f}) | {fmt(smooth)} ({st.mean(smooth):.2f}) "
            f"| {' / '.join(f'{x:+.2f}' for x in diff)} | {up} |"
        )
for preset in ("w8a6", "w6a6", "w4a8"):
    for suffix in ("", "-smooth"):
        p = preset + suffix
        draws = [d for d in (1, 2, 3, 4) if ("adpdm", p, d) in table and ("qdiffusion", p, d) in table]
        if draws:
            diff = [table[("adpdm", p, d)] - table[("qdiffusion", p, d)] for d in draws]
            print(
                f"adpdm minus qdiffusion, {p}: {' / '.join(f'{x:+.2f}' for x in diff)} (mean {st.mean(diff):+.2f}, "
                f"{sum(x > 0 for x in diff)}/{len(diff)} ahead)"
            )
