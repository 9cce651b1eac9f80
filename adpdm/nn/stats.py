"""Per-step activation statistics gathered during calibration.

They initialise the group ranges and give the activation signature of each sampling step used
by calibration-timestep selection. Slot K collects calls made outside a step context.
"""

from __future__ import annotations

import torch

from ..context import StepIndex


class StepStatistics:
    """Exact min / max, moments, and a bounded sample of values for each sampling step.

    Args:
        num_steps: K.
        reservoir: values kept per step (a ring buffer of evenly spaced samples of each call).
    """

    def __init__(self, num_steps: int, reservoir: int) -> None:
        self.num_steps, self.size = num_steps, reservoir
        self.clear()

    def clear(self) -> None:
        self._slots: dict[int, dict[str, torch.Tensor | int]] = {}

    @property
    def observed(self) -> bool:
        return bool(self._slots)

    def values(self, step: int) -> torch.Tensor | None:
        """The kept sample of step ``step``'s values, or ``None`` if that step was not observed."""
        slot = self._slots.get(step)
        return None if slot is None else slot["values"]

    def observe(self, x: torch.Tensor, step: StepIndex | None) -> None:
        """Record ``x`` under its step (per sample when ``step`` is a tensor)."""
        if step is None:
            self._update(self.num_steps, x)
        elif isinstance(step, int):
            self._update(step, x)
        else:
            for k in step.unique().tolist():
                self._update(int(k), x[step.to(x.device) == k])

    def _update(self, slot: int, x: torch.Tensor) -> None:
        x = x.float().flatten()
        if slot > self.num_steps:
            raise ValueError(f"step index {slot} out of range for {self.num_steps} sampling steps")
        s = self._slots.get(slot)
        if s is None:
            s = self._slots[slot] = {
                "min": x.min(), "max": x.max(), "sum": x.new_zeros((), dtype=torch.float64),
                "sumsq": x.new_zeros((), dtype=torch.float64), "count": 0,
                "values": x.new_empty(0), "ptr": 0,
            }  # fmt: skip
        s["min"], s["max"] = torch.minimum(s["min"], x.min()), torch.maximum(s["max"], x.max())
        s["sum"] = s["sum"] + x.sum(dtype=torch.float64)
        s["sumsq"] = s["sumsq"] + torch.dot(x, x).double()
        s["count"] += x.numel()
        m = min(x.numel(), max(1, self.size // 2))
        sample = x[torch.linspace(0, x.numel() - 1, m, device=x.device).long()]
        values = s["values"]
        if values.numel() < self.size:
            s["values"] = torch.cat([values, sample])[: self.size]
        else:  # ring buffer over the most recent calls
            idx = (torch.arange(m, device=x.device) + s["ptr"]) % self.size
            values[idx] = sample
            s["ptr"] = (s["ptr"] + m) % self.size

    def pooled(self, steps: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sampled values and exact (min, max) over ``steps``; all observed steps if none of them was."""
        slots = [k for k in steps if k in self._slots]
        if not slots:
            slots = list(self._slots)
        elif self.num_steps in self._slots:
            slots.append(self.num_steps)
        values = torch.cat([self._slots[k]["values"] for k in slots])
        xmin = torch.stack([self._slots[k]["min"] for k in slots]).min()
        xmax = torch.stack([self._slots[k]["max"] for k in slots]).max()
        return values, xmin, xmax

    def signature(self) -> torch.Tensor:
        """Per-step features (K, 6): mean, std, min, max, 1st and 99th percentile; NaN if unobserved."""
        out = torch.full((self.num_steps, 6), float("nan"))
        for k, s in self._slots.items():
            if k == self.num_steps:
                continue
            mean = s["sum"] / s["count"]
            std = (s["sumsq"] / s["count"] - mean**2).clamp_min(0).sqrt()
            q = torch.quantile(s["values"].cpu(), torch.tensor([0.01, 0.99]))
            out[k] = torch.stack([mean.float().cpu(), std.float().cpu(), s["min"].cpu(), s["max"].cpu(), q[0], q[1]])
        return out
