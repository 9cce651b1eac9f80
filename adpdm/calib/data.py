"""Calibration data recorded from the full-precision model's own sampler (data-free).

Every denoiser call of a seeded sampling run is recorded, keyed by (sample, step, timestep,
guidance branch): exactly the inputs the denoiser sees at deployment, both branches of
classifier-free guidance included.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..context import step_context
from ..sampling import DenoiserInputs, SamplerConfig, sample

logger = logging.getLogger(__name__)

_KEYS = ("x", "timestep", "step", "sample", "branch")


@dataclass
class CalibrationSet:
    """Recorded denoiser inputs, one row per (sample, step, branch).

    Args:
        x: (M, C, H, W) noisy inputs x_k.
        timestep: (M,) scheduler timesteps t_k.
        step: (M,) sampling-step indices k.
        sample: (M,) index of the trajectory (initial noise) each row belongs to.
        branch: (M,) 0 = conditional (or unguided), 1 = unconditional branch of guidance.
        cond: extra per-row model inputs, e.g. ``{"class_labels": (M,)}``.
        num_steps: K, the length of the recorded trajectories.
    """

    x: torch.Tensor
    timestep: torch.Tensor
    step: torch.Tensor
    sample: torch.Tensor
    branch: torch.Tensor
    cond: dict[str, torch.Tensor] = field(default_factory=dict)
    num_steps: int = 0

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, rows: torch.Tensor) -> CalibrationSet:
        """The rows ``rows`` (an index or boolean mask)."""
        pick = {k: getattr(self, k)[rows] for k in _KEYS}
        return CalibrationSet(**pick, cond={k: v[rows] for k, v in self.cond.items()}, num_steps=self.num_steps)

    def select_steps(self, steps: list[int] | torch.Tensor) -> CalibrationSet:
        """Only the rows of the given sampling steps."""
        steps = torch.as_tensor(steps, dtype=torch.long)
        return self.subset(torch.isin(self.step, steps))

    def model_inputs(self, rows: torch.Tensor, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """``(x, timestep, step, cond_kwargs)`` of ``rows`` on ``device``."""
        cond = {k: v[rows].to(device) for k, v in self.cond.items()}
        return self.x[rows].to(device), self.timestep[rows].to(device), self.step[rows], cond

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Row indices in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield torch.arange(start, min(start + batch_size, len(self)))

    def save(self, folder: str | Path, shard_rows: int = 4096) -> Path:
        """Write safetensors shards plus ``index.json``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        shards = []
        for i, start in enumerate(range(0, len(self), shard_rows)):
            rows = torch.arange(start, min(start + shard_rows, len(self)))
            part = self.subset(rows)
            tensors = {k: getattr(part, k).contiguous() for k in _KEYS}
            tensors.update({f"cond.{k}": v.contiguous() for k, v in part.cond.items()})
            name = f"calib-{i:05d}.safetensors"
            save_file(tensors, out / name)
            shards.append(name)
        (out / "index.json").write_text(json.dumps({"num_steps": self.num_steps, "shards": shards}))
        return out

    @classmethod
    def load(cls, folder: str | Path) -> CalibrationSet:
        """Read a set written by :meth:`save`."""
        folder = Path(folder)
        try:
            index = json.loads((folder / "index.json").read_text())
            parts = [load_file(folder / name) for name in index["shards"]]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{folder} is not a readable calibration set: {err}") from err
        cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        cond = {k[5:]: v for k, v in cat.items() if k.startswith("cond.")}
        return cls(**{k: cat[k] for k in _KEYS}, cond=cond, num_steps=int(index["num_steps"]))


class _Recorder:
    """Sampling callback collecting every denoiser call."""

    def __init__(self, guided: bool, first: int = 0) -> None:
        self.guided = guided
        self.rows: dict[str, list[torch.Tensor]] = {k: [] for k in (*_KEYS, "class_labels")}
        self.offset, self.batch = first, 0

    def __call__(self, k: int, t: torch.Tensor, inputs: DenoiserInputs) -> None:
        b = inputs.sample.shape[0]
        n = b // 2 if self.guided else b
        if k == 0:  # a new batch of trajectories starts
            self.offset += self.batch
            self.batch = n
        idx = torch.arange(n) + self.offset
        self.rows["x"].append(inputs.sample.detach().float().cpu().clone())
        self.rows["timestep"].append(torch.full((b,), int(t)))
        self.rows["step"].append(torch.full((b,), k))
        self.rows["sample"].append(idx.repeat(2) if self.guided else idx)
        self.rows["branch"].append(torch.arange(b) // n if self.guided else torch.zeros(b, dtype=torch.long))
        if inputs.class_labels is not None:
            self.rows["class_labels"].append(inputs.class_labels.detach().cpu().clone())

    def result(self, num_steps: int) -> CalibrationSet:
        cat = {k: torch.cat(v) for k, v in self.rows.items() if v}
        cond = {"class_labels": cat.pop("class_labels")} if "class_labels" in cat else {}
        return CalibrationSet(**cat, cond=cond, num_steps=num_steps)


def record_trajectories(
    unet: torch.nn.Module,
    scheduler_config: dict,
    num_samples: int,
    sampler: SamplerConfig,
    num_classes: int | None = None,
    null_class: int | None = None,
    progress: bool = True,
    first: int = 0,
) -> CalibrationSet:
    """Run the FP sampler from seeded noise and record every denoiser input.

    Args:
        unet: the full-precision denoiser (or a quantized model in FP state).
        scheduler_config: the model's scheduler config.
        num_samples: number of trajectories.
        sampler: sampling settings (scheduler, steps K, guidance, seed).
        num_classes: classes of a conditional model (labels cycle over them), else ``None``.
        null_class: label of the unconditional branch under guidance.
        progress: show a progress bar.
        first: global index of the first trajectory (a shard of a larger run, see :mod:`adpdm.distributed`).
    """
    guided = num_classes is not None and sampler.guidance_scale != 1.0
    recorder = _Recorder(guided, first)
    sample(unet, scheduler_config, num_samples, sampler, num_classes=num_classes, null_class=null_class,
           progress=progress, callback=recorder, first=first)  # fmt: skip
    calib = recorder.result(sampler.num_steps)
    logger.info("recorded %d denoiser inputs (%d trajectories x %d steps)", len(calib), num_samples, sampler.num_steps)
    return calib


def concat(parts: list[CalibrationSet]) -> CalibrationSet:
    """Rows of several sets (same K and condition keys) one after the other."""
    if not parts or len({p.num_steps for p in parts}) != 1 or len({tuple(sorted(p.cond)) for p in parts}) != 1:
        raise ValueError("concat needs at least one set, all with the same num_steps and condition inputs")
    cat = {k: torch.cat([getattr(p, k) for p in parts]) for k in _KEYS}
    cond = {k: torch.cat([p.cond[k] for p in parts]) for k in parts[0].cond}
    return CalibrationSet(**cat, cond=cond, num_steps=parts[0].num_steps)


def describe(calib: CalibrationSet) -> dict[str, Any]:
    """A JSON-ready summary for reports."""
    return {"rows": len(calib), "steps": sorted(set(calib.step.tolist())), "trajectories": int(calib.sample.max()) + 1}


@torch.no_grad()
def forward_rows(model: torch.nn.Module, calib: CalibrationSet, batch: int, device: torch.device) -> torch.Tensor:
    """The denoiser's output on every row of ``calib`` (in order, on the CPU), each in its step context."""
    outs = []
    for rows in calib.batches(batch):
        x, t, step, cond = calib.model_inputs(rows, device)
        with step_context(step.to(device)):
            outs.append(model(x, t, **cond).sample.float().cpu())
    return torch.cat(outs)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(N,) per row: ``||out - ref||^2 / ||ref||^2`` over every other dimension (in the inputs' dtype)."""
    ref = ref.flatten(1)
    return (out.flatten(1) - ref).pow(2).sum(1) / ref.pow(2).sum(1).clamp_min(1e-12)
