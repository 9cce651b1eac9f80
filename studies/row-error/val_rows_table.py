"""The row-error validation study as one paired table: ``validation_sampler_rows.sh``'s two results files,
row error "relative" against "sampler", per model, preset, method and calibration draw (validation noise seed 7).

Usage: .venv/bin/python studies/row-error/val_rows_table.py  (prints the markdown table of ``results/val_rows.md``)
"""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = ("relative", "sampler")


def rows(setting: str) -> dict[tuple, tuple[dict, dict]]:
    data = json.loads((RESULTS / f"val_rows_{setting}.json").read_text())
    out = {}
    for r in data["rows"]:
        if r["method"] != "fp32":
            key = (r["model"], r["preset"], r["method"], r["draw"])
            out[key] = (r, data["reports"]["|".join(map(str, (r["model"], r["method"], r["preset"], r["draw"])))])
    return out


def tables(report: dict) -> str:
    seen = [u.get("table") for u in report["unit_losses"] if u.get("table")]
    return f"{seen.count('kept')}/{len(seen) - seen.count('unchanged')}" if seen else "-"


runs = {s: rows(s) for s in SETTINGS}
common = sorted(set(runs["relative"]) & set(runs["sampler"]))
print(
    "| model | preset | method | draw | PSNR relative / sampler | FID vs FP | haze | kept (judge dB) | "
    "table changes kept / proposed |"
)
print("|---|---|---|---|---|---|---|---|---|")
diffs: dict[tuple, list[float]] = {}
for key in common:
    (a, ra), (b, rb) = runs["relative"][key], runs["sampler"][key]
    ka, kb = ra["outcome"], rb["outcome"]
    judge = f"{ka['kept']} ({ka['psnr']['reconstructed']:.1f}) / {kb['kept']} ({kb['psnr']['reconstructed']:.1f})"
    print(
        f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {a['psnr']:.2f} / {b['psnr']:.2f} | {a['fid_fp']:.1f} / "
        f"{b['fid_fp']:.1f} | {a['haze']:.4f} / {b['haze']:.4f} | {judge} | {tables(ra)} / {tables(rb)} |"
    )
    diffs.setdefault((key[0], key[2]), []).append(b["psnr"] - a["psnr"])
print("\nsampler - relative, PSNR (dB), per model and method: mean, pairs up / pairs")
for (model, method), d in sorted(diffs.items()):
    print(f"- {model} {method}: {sum(d) / len(d):+.2f} dB, {sum(x > 0 for x in d)}/{len(d)} up")
every = [x for d in diffs.values() for x in d]
print(f"- all: {sum(every) / len(every):+.2f} dB, {sum(x > 0 for x in every)}/{len(every)} up")
