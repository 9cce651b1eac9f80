"""AdaRound: learned rounding of weights (Nagel et al., 2020).

Notation:
    w_floor = floor(w / s)                    lower integer grid point
    h(V)    = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)   rectified sigmoid, in [0, 1]
    w_soft  = s * (clamp(w_floor + h(V) + z, qmin, qmax) - z)
    reg     = sum(1 - |2 h(V) - 1|^beta)      pushes h to {0, 1}; beta is annealed 20 -> 2
After optimisation the rounding is hard: h = 1[V >= 0], i.e. floor or ceil for every element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ZETA = 1.1
GAMMA = -0.1


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """h(V): the soft rounding offset in [0, 1]."""
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def init_logits(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """V such that h(V) equals the fractional part of ``w / scale`` (soft weights == FP weights)."""
    rest = w / scale - torch.floor(w / scale)
    rest = rest.clamp(1e-4, 1 - 1e-4)
    return -torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)


def soft_codes(w_floor: torch.Tensor, v: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Relaxed integer codes ``clamp(w_floor + h(V) + z)`` (differentiable in ``V``)."""
    return torch.clamp(w_floor + rectified_sigmoid(v) + zero, qmin, qmax)


def hard_codes(w_floor: torch.Tensor, v: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Final integer codes: round down where ``V < 0``, up otherwise."""
    return torch.clamp(w_floor + (v >= 0).to(w_floor.dtype) + zero, qmin, qmax)


def rounding_regularizer(v: torch.Tensor, beta: float) -> torch.Tensor:
    """``sum(1 - |2 h(V) - 1|^beta)``: zero exactly when every h(V) is 0 or 1."""
    return (1 - (2 * rectified_sigmoid(v) - 1).abs().pow(beta)).sum()


@dataclass(frozen=True)
class BetaSchedule:
    """Anneals beta from ``start`` to ``end`` after a warm-up with no regulariser.

    Args:
        iters: total optimisation iterations.
        start: beta at the end of warm-up (default 20).
        end: beta at the last iteration (default 2).
        warmup: fraction of iterations without the regulariser (default 0.2).
    """

    iters: int
    start: float = 20.0
    end: float = 2.0
    warmup: float = 0.2

    def __call__(self, it: int) -> float | None:
        """beta at iteration ``it``, or ``None`` during warm-up."""
        begin = int(self.warmup * self.iters)
        if it < begin:
            return None
        progress = (it - begin) / max(1, self.iters - begin)
        return self.end + (self.start - self.end) * max(0.0, 1 - progress)


def cosine_anneal(it: int, iters: int, start: float, end: float) -> float:
    """Cosine interpolation from ``start`` (it = 0) to ``end`` (it = iters)."""
    progress = min(1.0, it / max(1, iters))
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))
