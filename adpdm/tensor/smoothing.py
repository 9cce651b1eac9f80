"""Per-input-channel smoothing factors (SmoothQuant, Xiao et al. 2023): ``s_j = a_j^alpha / w_j^(1 - alpha)``.

``a_j`` is the largest |activation| of input channel j, ``w_j`` the largest |weight| that multiplies it.
Dividing the input by ``s`` and multiplying the weight by ``s`` leaves the product unchanged and
equalises the channels' ranges by strength ``alpha`` (0: all difficulty stays in the activations'
channels relative to the weights', 1: activations flattened completely).
"""

from __future__ import annotations

import torch

_EPS = 1e-5


def channel_absmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Largest |x| of every channel along ``axis``: (C,)."""
    return x.detach().abs().movedim(axis, 0).reshape(x.shape[axis], -1).amax(dim=1)


def smoothing_factors(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """Factors ``s`` (C,) of strength ``alpha`` in [0, 1], normalised to geometric mean 1 (the product is
    invariant to a common factor; this keeps the scaled weights near their original size)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    a, w = act_absmax.float().clamp_min(_EPS), weight_absmax.float().clamp_min(_EPS)
    log_s = alpha * a.log() - (1.0 - alpha) * w.log()
    return (log_s - log_s.mean()).clamp(-12.0, 12.0).exp()
