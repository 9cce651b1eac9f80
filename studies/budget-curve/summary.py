"""Table of the budget-curve study: PSNR against FP, calibration time and the units' summed held-out and fit
errors (before -> after reconstruction) per run, from the results files.

Usage: PYTHONPATH=. .venv/bin/python studies/budget-curve/summary.py
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
RUNS = (("iters50", "50 x 1, 16 trajectories"), ("iters200", "200 x 1, 16 trajectories"),
        ("iters1000", "1000 x 1, 16 trajectories"), ("rows128", "50 x 1, 128 trajectories"))  # fmt: skip

print(
    "| method | preset | draw | budget (iterations x votes, rows) | PSNR (dB) | calibration (s) | held-out error "
    "| fit error |"
)
print("|---|---|---|---|---|---|---|---|")
for method in ("adpdm", "qdiffusion"):
    for preset in ("w4a8", "w6a6"):
        for draw in (1, 2):
            for name, label in RUNS:
                path = HERE / f"results/{name}_{method}.json"
                if not path.is_file():
                    continue
                data = json.loads(path.read_text())
                key = f"embedded:mnist|{method}|{preset}|{draw}"
                row = next((r for r in data["rows"] if r["method"] == method and r["preset"] == preset
                            and r["draw"] == draw), None)  # fmt: skip
                if row is None:
                    continue
                units = data["reports"][key]["unit_losses"]

                def total(k: str, units: list = units) -> float:
                    return sum(u[k] for u in units)

                print(
                    f"| {method} | {preset} | {draw} | {label} | {row['psnr']:.2f} | {row['calib_seconds']:.0f} "
                    f"| {total('rec_before'):.2f} -> {total('rec_after'):.2f} "
                    f"| {total('fit_before'):.2f} -> {total('fit_after'):.2f} |"
                )
