"""SignRound: learned rounding offsets optimised by signed gradient descent (Cheng et al., 2023).

Notation (per output channel scale s and integer zero point z, as in :mod:`.fake_quant`):
    q     = clamp(round(w / s + v) + z, qmin, qmax)     integer code, v in [-0.5, 0.5]
    w_hat = (q - z) * s                                 the weight the forward pass uses
    v    <- clip(v - lr * sign(dL/dv), -0.5, 0.5)       one signed gradient step
The round is straight-through (dq/dv = 1 inside the code range, 0 where clamped), so the forward
pass is always hard: what is optimised is exactly what is deployed. v = 0 is round-to-nearest,
and since |v| <= 0.5 every code is floor(w / s) or floor(w / s) + 1, as with AdaRound.
"""

from __future__ import annotations

import torch

from .fake_quant import round_ste

LIMIT = 0.5


def codes(
    w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, v: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """``clamp(round(w / s + v) + z, qmin, qmax)``; differentiable in ``v`` (straight-through round)."""
    return torch.clamp(round_ste(w / scale + v) + zero, qmin, qmax)


def fake_quantize(
    w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, v: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """The dequantized weight ``(q - z) * s`` of :func:`codes`."""
    return (codes(w, scale, zero, v, qmin, qmax) - zero) * scale


@torch.no_grad()
def sign_step(v: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
    """In place: ``v <- clip(v - lr * sign(grad), -0.5, 0.5)``."""
    v.sub_(lr * grad.sign()).clamp_(-LIMIT, LIMIT)
