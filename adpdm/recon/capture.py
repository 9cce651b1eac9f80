"""Capture a unit's inputs and outputs by running the whole model (forward hooks, early stop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..calib.data import CalibrationSet
from ..context import step_context


class _Stop(Exception):
    """Raised by a hook to end the forward pass once the unit has been reached."""


@dataclass
class UnitInputs:
    """Positional and keyword inputs of a unit; per-sample tensors are concatenated on dim 0."""

    args: list[Any]
    kwargs: dict[str, Any]
    batched_args: list[bool]
    batched_kwargs: dict[str, bool]

    def take(self, rows: torch.Tensor) -> tuple[list[Any], dict[str, Any]]:
        args = [a[rows] if b else a for a, b in zip(self.args, self.batched_args, strict=True)]
        kwargs = {k: v[rows] if self.batched_kwargs[k] else v for k, v in self.kwargs.items()}
        return args, kwargs


def _merge(parts: list[Any], batch_sizes: list[int]) -> tuple[Any, bool]:
    first = parts[0]
    if isinstance(first, torch.Tensor) and first.dim() > 0 and first.shape[0] == batch_sizes[0]:
        # contiguous: torch 2.13's CPU GroupNorm backward crashes on channels-last inputs
        return torch.cat([p.detach().contiguous() for p in parts]), True
    return first, False


def _output_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "sample"):
        return out.sample
    return out[0]


def _run(model: nn.Module, calib: CalibrationSet, batch_size: int, device: torch.device) -> list[int]:
    sizes = []
    with torch.no_grad():
        for rows in calib.batches(batch_size):
            x, t, step, cond = calib.model_inputs(rows, device)
            sizes.append(len(rows))
            with step_context(step.to(device)):
                try:
                    model(x, t, **cond)
                except _Stop:
                    pass
    return sizes


def capture_inputs(
    model: nn.Module, unit: nn.Module, calib: CalibrationSet, batch_size: int, device: torch.device
) -> UnitInputs:
    """Inputs that ``unit`` receives inside ``model`` for every calibration row."""
    seen: list[tuple[tuple, dict]] = []

    def hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        seen.append((args, kwargs))
        raise _Stop

    handle = unit.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        sizes = _run(model, calib, batch_size, device)
    finally:
        handle.remove()
    merged_args = [_merge([s[0][i] for s in seen], sizes) for i in range(len(seen[0][0]))]
    merged_kwargs = {k: _merge([s[1][k] for s in seen], sizes) for k in seen[0][1]}
    return UnitInputs(
        args=[a for a, _ in merged_args], kwargs={k: v for k, (v, _) in merged_kwargs.items()},
        batched_args=[b for _, b in merged_args], batched_kwargs={k: b for k, (_, b) in merged_kwargs.items()},
    )  # fmt: skip


def capture_outputs(
    model: nn.Module, unit: nn.Module, calib: CalibrationSet, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Outputs of ``unit`` inside ``model`` for every calibration row, (M, ...)."""
    seen: list[torch.Tensor] = []

    def hook(_m: nn.Module, _args: tuple, out: Any) -> None:
        seen.append(_output_tensor(out).detach())
        raise _Stop

    handle = unit.register_forward_hook(hook)
    try:
        _run(model, calib, batch_size, device)
    finally:
        handle.remove()
    return torch.cat(seen).contiguous()


def execution_order(model: nn.Module, units: list, calib: CalibrationSet, device: torch.device) -> list:
    """``units`` sorted by when they first run in a forward pass (registration order can differ)."""
    first: dict[int, int] = {}

    def seen(i: int):  # noqa: ANN202
        def hook(_m: nn.Module, _args: tuple) -> None:
            first.setdefault(i, len(first))

        return hook

    handles = [u.module.register_forward_pre_hook(seen(i)) for i, u in enumerate(units)]
    try:
        _run(model, calib.subset(torch.arange(min(2, len(calib)))), 2, device)
    finally:
        for h in handles:
            h.remove()
    missing = [units[i].name for i in range(len(units)) if i not in first]
    if missing:
        raise RuntimeError(f"units never called in a forward pass: {missing}")
    return [units[i] for i in sorted(first, key=first.get)]


def unit_forward(unit: nn.Module, inputs: UnitInputs, rows: torch.Tensor) -> torch.Tensor:
    """Run ``unit`` on the captured inputs of ``rows``."""
    args, kwargs = inputs.take(rows)
    return _output_tensor(unit(*args, **kwargs))
