"""scripts/merge_results.py: a benchmark run in parts (draws split over processes) joined into one file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("merge_results", ROOT / "scripts" / "merge_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _part(draws: list[int], psnr: dict[tuple[str, int], float], fp_psnr: float = 0.0) -> dict:
    rows = [{"model": "m", "method": "fp32", "preset": "fp32", "draw": None, "accuracy": 1.0 - fp_psnr}]
    rows += [{"model": "m", "method": meth, "preset": "w8a8", "draw": d, "psnr": v} for (meth, d), v in psnr.items()]
    config = {"name": "part", "draws": draws, "steps": 20}
    return {"rows": rows, "reports": {}, "samples": {}, "config": config, "wall_seconds": 10.0 * len(draws),
            "protocol": f"every method calibrated on the same draws {draws} and scored on held-out noise"}  # fmt: skip


def test_parts_join_rows_draws_and_paired_records() -> None:
    merge = _script().merge
    a = _part([1, 2], {("rtn", 1): 30.0, ("adpdm", 1): 32.0, ("rtn", 2): 31.0, ("adpdm", 2): 33.5})
    b = _part([3, 4], {("rtn", 3): 29.0, ("adpdm", 3): 31.0, ("rtn", 4): 30.5, ("adpdm", 4): 32.0}, fp_psnr=0.5)
    merged = merge([a, b])
    assert merged["config"]["draws"] == [1, 2, 3, 4]
    assert "[1, 2, 3, 4]" in merged["protocol"]
    assert [r for r in merged["rows"] if r["method"] == "fp32"] == [a["rows"][0]]  # one FP row, the first part's
    assert len(merged["rows"]) == 9
    adpdm = next(s for s in merged["summary"] if s["method"] == "adpdm")
    assert adpdm["draws"] == [1, 2, 3, 4]
    assert adpdm["paired"]["rtn"]["psnr"]["wins"] == 4


def test_parts_of_other_settings_are_refused() -> None:
    merge = _script().merge
    a = _part([1], {("rtn", 1): 30.0})
    b = _part([2], {("rtn", 2): 30.0})
    b["config"]["steps"] = 50
    with pytest.raises(SystemExit, match="steps differ"):
        merge([a, b])
