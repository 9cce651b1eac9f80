"""Figures of a benchmark run: FID against bit width, and activation ranges with the learned partition."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panel(ax, model: str, metric: str) -> None:  # noqa: ANN001
    ax.set_title(model)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _save(plt, fig, path: Path) -> Path:  # noqa: ANN001
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fid_vs_bits(data: dict[str, Any], path: Path, metric: str = "fid_fp") -> Path:
    """One panel per model: ``metric`` (mean ± std over the draws) against the preset, one line per method."""
    plt = _plt()
    rows = [r for r in data["rows"] if r["method"] != "fp32" and r.get(metric) is not None]
    models = sorted({r["model"] for r in rows})
    presets = [p for p in ("w8a8", "w6a6", "w4a8") if any(r["preset"] == p for r in rows)]
    methods = sorted({r["method"] for r in rows})
    color = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}  # one colour per method everywhere
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(5 * max(1, len(models)), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=False):
        for method in sorted({r["method"] for r in rows if r["model"] == model}):
            # mean and spread over the calibration draws
            vals = [[r[metric] for r in rows if (r["model"], r["method"], r["preset"]) == (model, method, p)]
                    for p in presets]  # fmt: skip
            ys = [sum(v) / len(v) if v else None for v in vals]
            err = [(sum((x - y) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
                   for v, y in zip(vals, ys, strict=True)]  # fmt: skip
            ax.errorbar(presets, ys, yerr=err, marker="o", label=method, color=color[method], capsize=3)
        _panel(ax, model, metric)
        ax.set_yscale("log")
    return _save(plt, fig, path)


def frontier(datas: list[dict[str, Any]], path: Path, metric: str = "fid_fp") -> Path | None:
    """One panel per model: ``metric`` (mean over the draws) against giga-bit-operations per sample and
    denoiser call, one point per preset (uniform or ``-mixed``) and method, the rows of several results
    files together (e.g. a benchmark and its mixed-precision runs): the frontier a user chooses from.
    None when no row states its bit-operations (results of versions before 0.8.0)."""
    rows = [r for d in datas for r in d["rows"] if r["method"] != "fp32" and r.get(metric) is not None
            and r.get("gbops") is not None]  # fmt: skip
    if not rows:
        return None
    plt = _plt()
    models = sorted({r["model"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    color = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for method in methods:
            cells: dict[tuple[str, float], list[dict]] = {}  # a recipe: its preset and bit-operations
            for r in rows:
                if (r["model"], r["method"]) == (model, method):
                    cells.setdefault((r["preset"], round(r["gbops"], 4)), []).append(r)
            points = sorted((gbops, sum(r[metric] for r in c) / len(c), preset) for (preset, gbops), c in cells.items())
            if not points:
                continue
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=color[method], label=method)
            for x, y, preset in points:
                ax.annotate(preset, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        _panel(ax, model, metric)
        ax.set_xlabel("GBOPs per sample and denoiser call")
    return _save(plt, fig, path)


def ranges_with_partition(report: dict[str, Any], path: Path) -> Path | None:
    """Activation min / max against the sampling step for a few layers, the step->group table shaded."""
    ranges = report.get("selection", {}).get("step_ranges")
    table = report.get("partition")
    if not ranges or not isinstance(table, list):
        return None
    plt = _plt()
    names = list(ranges)
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 1.8 * len(names)), sharex=True, squeeze=False)
    colors = plt.get_cmap("Pastel1")
    steps = range(len(table))
    for ax, name in zip(axes[:, 0], names, strict=True):
        for k in steps:
            ax.axvspan(k - 0.5, k + 0.5, color=colors(table[k] % 9), linewidth=0)
        ax.plot(steps, ranges[name]["max"], color="tab:red", lw=1)
        ax.plot(steps, ranges[name]["min"], color="tab:blue", lw=1)
        for k in report.get("selected_steps", []):
            ax.axvline(k, color="black", lw=0.5, ls=":")
        ax.set_ylabel(name.replace(".input_quant", "").split(".")[-1] if len(name) > 30 else name, fontsize=6)
        ax.set_title(name, fontsize=7, loc="left")
    axes[-1, 0].set_xlabel("sampling step k (shading: learned group; dotted: calibration steps)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_figures(data: dict[str, Any], folder: Path, name: str) -> list[Path]:
    """All figures of a results file."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [fid_vs_bits(data, folder / f"{name}_fid_vs_bits.png")]
    metric = "fid_fp" if any(r.get("fid_fp") is not None for r in data["rows"]) else "psnr"
    if (p := frontier([data], folder / f"{name}_{metric}_vs_bops.png", metric)) is not None:
        paths.append(p)
    draws = data.get("config", {}).get("draws") or [None]
    drawn: set[str] = set()
    for key, report in data.get("reports", {}).items():
        parts = key.split("|")
        if len(parts) > 3 and parts[3] != str(draws[0]):
            continue  # the ranges of the first draw only
        # the FP ranges and the partition often do not depend on the preset: one figure for identical content
        content = json.dumps([parts[0], report.get("selection", {}).get("step_ranges"), report.get("partition"),
                              report.get("selected_steps")])  # fmt: skip
        if report.get("method") == "adpdm" and content not in drawn:
            drawn.add(content)
            p = ranges_with_partition(report, folder / f"{name}_{key.replace('|', '_').replace(':', '_')}_ranges.png")
            if p is not None:
                paths.append(p)
    logger.info("wrote %d figures to %s", len(paths), folder)
    return paths
