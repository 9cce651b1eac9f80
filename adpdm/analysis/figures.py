"""Figures of a sensitivity report: layer x step error heat maps, and activation ranges per step."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .report import SensitivityReport

logger = logging.getLogger(__name__)


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(report: SensitivityReport, mode: str) -> np.ndarray:
    """(units, K) per-step errors of ``mode``, NaN for units without that mode."""
    k = len(report.sensitivity)
    rows = [getattr(u, mode).per_step if getattr(u, mode) is not None else [math.nan] * k for u in report.layers]
    return np.asarray(rows, dtype=float).reshape(len(rows), k)


def heatmap(report: SensitivityReport, path: str | Path) -> Path:
    """Relative output error per unit (rows, module order) and step (columns), weights | activations.

    Log colour scale shared by both panels; grey = not quantized in that mode. The top panel is
    the error with every layer quantized and the sampler's weight ``b_k^2`` of each step.
    """
    from matplotlib.colors import LogNorm

    plt = _plt()
    grids = {"weights only": _grid(report, "weight"), "input activations only": _grid(report, "act")}
    positive = np.concatenate([g[g > 0] for g in grids.values()] + [np.array([1e-12])])
    vmax = float(positive.max())
    norm = LogNorm(vmin=max(float(np.percentile(positive, 1)), vmax * 1e-7), vmax=vmax)
    n, k = len(report.layers), len(report.sensitivity)
    fig = plt.figure(figsize=(11, 2.6 + 0.11 * n))
    spec = fig.add_gridspec(2, 3, height_ratios=[2.2, 0.11 * n], width_ratios=[1, 1, 0.05], hspace=0.6 / (1 + n / 20))
    top = fig.add_subplot(spec[0, :2])
    steps = np.arange(k)
    top.semilogy(steps, report.all_layers.per_step, "o-", color="black", label="all layers quantized")
    top.set_ylabel("rel. error")
    top.set_xlim(-0.5, k - 0.5)
    top.set_xticks(steps[:: max(1, k // 10)])
    top.set_title(f"{report.model} {report.preset}: ||eps_q - eps_fp||^2 / ||eps_fp||^2 per step, one unit quantized")
    twin = top.twinx()
    b2 = np.asarray(report.sensitivity) ** 2
    twin.bar(steps, b2 / b2.max(), color="tab:blue", alpha=0.2, label="b_k^2 (normalised)")
    twin.set_ylabel("b_k^2 / max", color="tab:blue")
    top.legend(loc="upper center", fontsize=7)
    cmap = plt.get_cmap("magma").with_extremes(bad="0.85")
    image = None
    for col, (title, grid) in enumerate(grids.items()):
        ax = fig.add_subplot(spec[1, col])
        masked = np.ma.masked_where(~(grid > 0), grid)
        image = ax.imshow(masked, aspect="auto", norm=norm, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("sampling step k")
        ax.set_xticks(steps[:: max(1, k // 10)])
        ax.set_yticks(range(n))
        ax.set_yticklabels([u.name for u in report.layers] if col == 0 else [], fontsize=5)
    fig.colorbar(image, cax=fig.add_subplot(spec[1, 2]), label="relative output error")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def ranges(report: SensitivityReport, path: str | Path, top: int = 6) -> Path:
    """Per-step min / max (light) and percentile band (dark) of the quantizers of the worst activation units."""
    plt = _plt()
    order = {u.name: i for i, u in enumerate(report.ranked("act"))}
    score = {u.name: u.score("act") for u in report.layers}
    picked = sorted((r for r in report.ranges if r.unit in order), key=lambda r: order[r.unit])[:top]
    p = report.settings.get("percentile", 99.9)
    fig, axes = plt.subplots(max(1, len(picked)), 1, figsize=(7, 1.9 * max(1, len(picked))), sharex=True,
                             squeeze=False)  # fmt: skip
    for ax, r in zip(axes[:, 0], picked, strict=False):
        steps = np.arange(len(r.min))
        ax.fill_between(steps, r.min, r.max, color="tab:orange", alpha=0.3, label="min..max")
        ax.fill_between(steps, r.low, r.high, color="tab:orange", alpha=0.7, label=f"{100 - p:g}..{p:g} %")
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_title(f"{r.name}  (unit act score {score[r.unit]:.3g}, range varies x{r.variation:.3g})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xticks(steps[:: max(1, len(steps) // 10)])
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("sampling step k")
    if not picked:
        axes[0, 0].set_title("no activation quantizers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
