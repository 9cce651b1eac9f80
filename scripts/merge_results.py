"""Merge results files of one benchmark run in parts (e.g. calibration draws split over two processes).

Rows are joined (one row per model, method, preset and draw: the first file's wins, so the FP row that
every part makes once is kept once); the settings must agree but for the draws, which are joined too. The
summary, the markdown and the figures are made again from the joined rows, as `adpdm bench` makes them.
Usage: python scripts/merge_results.py NAME PART.json [PART.json ...]  (writes benchmarks/results/NAME.*)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from adpdm.bench import summarize, write_markdown
from adpdm.bench_figures import write_figures

OUT = Path("benchmarks")


def merge(parts: list[dict]) -> dict:
    """The parts' rows and reports in one results dict (settings of the first part, draws joined)."""
    first = parts[0]
    for part in parts[1:]:
        mine = {k: v for k, v in part["config"].items() if k not in ("draws", "name")}
        theirs = {k: v for k, v in first["config"].items() if k not in ("draws", "name")}
        if mine != theirs:
            differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            raise SystemExit(f"the parts were made with other settings ({', '.join(differ)} differ)")
    merged = {**first, "rows": [], "reports": {}, "samples": {}}
    seen = set()
    for part in parts:
        for row in part["rows"]:
            key = (row["model"], row["method"], row.get("preset"), row.get("draw"))
            if key not in seen:
                seen.add(key)
                merged["rows"].append(row)
        merged["reports"] = {**part.get("reports", {}), **merged["reports"]}
        merged["samples"] = {**part.get("samples", {}), **merged["samples"]}
    draws = sorted({d for part in parts for d in part["config"]["draws"]})
    merged["config"] = {**first["config"], "draws": draws}
    merged["protocol"] = first["protocol"].replace(str(first["config"]["draws"]), str(draws))
    merged["wall_seconds"] = max(part.get("wall_seconds", 0.0) for part in parts)  # the parts ran side by side
    merged["summary"] = summarize(merged["rows"])
    return merged


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    name, paths = argv[0], argv[1:]
    merged = merge([json.loads(Path(p).read_text()) for p in paths])
    merged["config"]["name"] = name
    path = OUT / "results" / f"{name}.json"
    path.write_text(json.dumps(merged, indent=1))
    write_markdown(merged, path.with_suffix(".md"))
    write_figures(merged, OUT / "figures", name)
    print(f"{len(merged['rows'])} rows from {len(paths)} parts -> {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
