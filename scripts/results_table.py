"""The README's results table, read off the benchmark's results files.

Per model and preset: every method's PSNR against FP (mean ± std over the calibration draws) and the
paired verdict of adpdm against qdiffusion; the version and commit that made the files come first.
Usage: python scripts/results_table.py [FILE ...] (default: both embedded models' benchmark files)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT = ("benchmarks/results/benchmark_mnist.json", "benchmarks/results/benchmark_mnist-cond.json")
METHODS = ("rtn", "ptq4dm", "qdiffusion", "adpdm")
PRESETS = ("w8a8", "w8a6", "w6a6", "w4a8", "w4a6")


def cell(stat: dict) -> str:
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def table(paths: list[str]) -> str:
    files = [json.loads(Path(p).read_text()) for p in paths]
    made_by = sorted({f"{d.get('adpdm_version')} ({d.get('commit')})" for d in files})
    summary = {(s["model"], s["preset"], s["method"]): s for d in files for s in d["summary"]}
    models = sorted({m for m, _, _ in summary}, key=lambda m: (len(m), m))
    lines = [f"<!-- made by {', '.join(made_by)} -->",
             "| model | preset | " + " | ".join(METHODS) + " | adpdm - qdiffusion (wins) |",
             "|---|---|" + "---|" * (len(METHODS) + 1)]  # fmt: skip
    for model in models:
        for preset in PRESETS:
            if (model, preset, "adpdm") not in summary:
                continue
            cells = [cell(summary[(model, preset, m)]["psnr"]) for m in METHODS]
            paired = summary[(model, preset, "adpdm")]["paired"]["qdiffusion"]["psnr"]
            verdict = f"{paired['mean_diff']:+.2f} ({paired['wins']}/{paired['n']}, {paired['verdict']})"
            lines.append(f"| `{model}` | {preset.upper()} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(table(sys.argv[1:] or list(DEFAULT)) + "\n")
