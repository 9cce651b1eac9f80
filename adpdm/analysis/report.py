"""The result of a sensitivity analysis: dataclasses, their JSON form, and the terminal table."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.table import markdown_table

_TYPE = "adpdm.SensitivityReport"
_VERSION = 1
MODES = ("weight", "act")


@dataclass
class StepErrors:
    """Relative output error of the model with some quantizers on, against full precision.

    Args:
        per_step: (K,) mean over the trajectories of ``||eps_q - eps_fp||^2 / ||eps_fp||^2`` at step k.
        score: trajectory-weighted mean, ``sum_k b_k^2 e_k / sum_k b_k^2`` (see :mod:`.metrics`).
        mean: unweighted mean over the steps.
    """

    per_step: list[float]
    score: float
    mean: float

    @property
    def peak_step(self) -> int:
        """The step with the largest relative error."""
        return max(range(len(self.per_step)), key=self.per_step.__getitem__)


@dataclass
class LayerSensitivity:
    """One unit: a quantized Conv2d / Linear, or an attention block's matmul quantizers.

    Args:
        name: module name (the Attention module for ``kind == "attention"``).
        kind: ``"conv"``, ``"linear"`` or ``"attention"``.
        params: weight elements (0 for attention: its projections are layers of their own).
        wbits: weight bits (``None`` for attention).
        abits: input activation bits (``None`` when the input is not quantized).
        quantizers: names of the unit's activation quantizers.
        weight: errors with only this layer's weights quantized (``None`` for attention).
        act: errors with only this unit's activation quantizers on (``None`` without any).
        macs: multiply-accumulates per sample and denoiser call (0 for attention, and in reports of
            versions before 0.7.0).
    """

    name: str
    kind: str
    params: int
    wbits: int | None
    abits: int | None
    quantizers: list[str]
    weight: StepErrors | None
    act: StepErrors | None
    macs: int = 0

    def score(self, mode: str) -> float:
        """The trajectory-weighted score of ``mode`` ("weight" or "act"); 0 when not quantized."""
        errors = getattr(self, mode)
        return 0.0 if errors is None else errors.score


@dataclass
class ActRange:
    """Observed values of one activation quantizer per step (calibration statistics), each (K,).

    ``low`` / ``high`` are percentiles of a bounded sample of the values (see ``settings.percentile``).
    """

    name: str
    unit: str
    min: list[float]
    max: list[float]
    low: list[float]
    high: list[float]
    variation: float  # widest / narrowest per-step percentile range


@dataclass
class SensitivityReport:
    """Per-layer, per-step output errors of a quantization preset, and per-step activation ranges."""

    model: str
    preset: str
    quant_config: dict[str, Any]
    settings: dict[str, Any]
    timesteps: list[int]
    sensitivity: list[float]  # b_k of the sampler
    layers: list[LayerSensitivity]
    all_layers: StepErrors
    ranges: list[ActRange]
    machine: dict[str, Any]
    seconds: float
    code: dict[str, Any] = dataclasses.field(default_factory=dict)  # version and commit

    def ranked(self, mode: str) -> list[LayerSensitivity]:
        """Units with a ``mode`` row, most sensitive first."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return sorted((u for u in self.layers if getattr(u, mode) is not None), key=lambda u: -u.score(mode))

    def to_dict(self) -> dict[str, Any]:
        return {"_type": _TYPE, "_version": _VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityReport:
        if data.get("_type") != _TYPE or data.get("_version") != _VERSION:
            raise ValueError(f"not a {_TYPE} version {_VERSION}: {data.get('_type')!r} {data.get('_version')!r}")
        errors = lambda d: None if d is None else StepErrors(**d)  # noqa: E731
        layers = [LayerSensitivity(**{**u, "weight": errors(u["weight"]), "act": errors(u["act"])})
                  for u in data["layers"]]  # fmt: skip
        fields = {k: v for k, v in data.items() if not k.startswith("_")}
        return cls(**{**fields, "layers": layers, "all_layers": StepErrors(**data["all_layers"]),
                      "ranges": [ActRange(**r) for r in data["ranges"]]})  # fmt: skip

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SensitivityReport:
        return cls.from_dict(json.loads(Path(path).read_text()))


def worst_table(report: SensitivityReport, top: int = 10) -> str:
    """Markdown table of the ``top`` units by weight + activation score.

    ``*_score`` is the trajectory-weighted error, ``*_rank`` the unit's rank by it, ``*_peak`` the
    step with the largest (unweighted) error.
    """
    rank = {mode: {u.name: i + 1 for i, u in enumerate(report.ranked(mode))} for mode in MODES}
    units = sorted(report.layers, key=lambda u: -(u.score("weight") + u.score("act")))[:top]
    rows = []
    for u in units:
        row: dict[str, Any] = {"layer": u.name, "params": u.params}
        for mode, short in (("weight", "w"), ("act", "a")):
            errors = getattr(u, mode)
            if errors is not None:
                row |= {f"{short}_score": errors.score, f"{short}_rank": rank[mode][u.name],
                        f"{short}_peak": errors.peak_step}  # fmt: skip
        rows.append(row)
    columns = ["layer", "params", "w_score", "w_rank", "w_peak", "a_score", "a_rank", "a_peak"]
    return markdown_table(rows, columns)
