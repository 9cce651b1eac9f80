"""Uniform affine quantization: ranges, quantization parameters, fake quantization.

Notation (per tensor or per output channel):
    q     = clamp(round(x / s) + z, qmin, qmax)     integer code
    x_hat = (q - z) * s                            dequantized value
with scale s > 0 and integer zero point z (z = 0 for symmetric quantization).
"""

from __future__ import annotations

import torch

_EPS = 1e-8


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer code range for ``bits`` bits: signed for symmetric, unsigned for asymmetric."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in [2, 16], got {bits}")
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest (exactly) with a straight-through gradient (identity)."""
    return _RoundSTE.apply(x) if x.requires_grad else torch.round(x)


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Quantize and dequantize ``x``; differentiable in ``x``, ``scale`` and ``zero`` (LSQ+ style).

    The gradient w.r.t. ``x`` is 1 inside the representable range and 0 where ``x`` is clipped.
    ``zero`` may be a float parameter: it is rounded with a straight-through estimator.
    """
    zero = round_ste(zero)
    q = torch.clamp(round_ste(x / scale) + zero, qmin, qmax)
    return (q - zero) * scale


def quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Integer codes of ``x`` (returned as a float tensor holding integers)."""
    return torch.clamp(torch.round(x / scale) + torch.round(zero), qmin, qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Real values of integer codes ``q``."""
    return (q.to(scale.dtype) - zero) * scale


def qparams_from_range(
    xmin: torch.Tensor, xmax: torch.Tensor, bits: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point that represent ``[xmin, xmax]`` (widened to contain 0)."""
    qmin, qmax = qrange(bits, symmetric)
    xmin = torch.minimum(xmin, torch.zeros_like(xmin))
    xmax = torch.maximum(xmax, torch.zeros_like(xmax))
    if symmetric:
        amax = torch.maximum(-xmin, xmax)
        scale = (amax / qmax).clamp_min(_EPS)
        return scale, torch.zeros_like(scale)
    scale = ((xmax - xmin) / (qmax - qmin)).clamp_min(_EPS)
    zero = torch.clamp(qmin - torch.round(xmin / scale), qmin, qmax)
    return scale, zero


def _reduce_dims(x: torch.Tensor, channel_axis: int | None) -> list[int]:
    return [d for d in range(x.dim()) if d != channel_axis] if channel_axis is not None else list(range(x.dim()))


def _keep_shape(x: torch.Tensor, channel_axis: int | None) -> list[int]:
    if channel_axis is None:
        return []
    shape = [1] * x.dim()
    shape[channel_axis] = x.shape[channel_axis]
    return shape


def minmax_range(x: torch.Tensor, channel_axis: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor (``channel_axis=None``) or per-channel min and max, shaped to broadcast against ``x``."""
    dims = _reduce_dims(x, channel_axis)
    xmin, xmax = x.amin(dim=dims), x.amax(dim=dims)
    shape = _keep_shape(x, channel_axis)
    return xmin.reshape(shape), xmax.reshape(shape)


def lp_error(x: torch.Tensor, x_hat: torch.Tensor, p: float, channel_axis: int | None = None) -> torch.Tensor:
    """Sum of ``|x - x_hat|^p``, per channel when ``channel_axis`` is given."""
    err = (x - x_hat).abs().pow(p)
    return err.sum(dim=_reduce_dims(x, channel_axis)).reshape(_keep_shape(x, channel_axis))


def lp_search_qparams(
    x: torch.Tensor,
    bits: int,
    symmetric: bool,
    channel_axis: int | None = None,
    p: float = 2.4,
    num_candidates: int = 80,
    min_shrink: float = 0.2,
    xrange: tuple[torch.Tensor, torch.Tensor] | None = None,
    chunk_elements: int = 1 << 23,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point minimising the Lp error over shrunk min-max ranges.

    Candidate ranges are ``[a * xmin, a * xmax]`` for ``a`` from 1 down to ``min_shrink``,
    evaluated in chunks of candidates, each vectorised over all channels and elements. ``a = 1``
    (min-max) is the first candidate and ties keep the earliest, so the result is never worse
    than min-max in the Lp error. ``xrange`` overrides the min-max range (e.g. exact extremes of
    a larger tensor of which ``x`` is a sample).
    """
    qmin, qmax = qrange(bits, symmetric)
    x = x.detach()
    xmin, xmax = xrange if xrange is not None else minmax_range(x, channel_axis)
    shrink = torch.linspace(1.0, min_shrink, num_candidates, dtype=x.dtype, device=x.device)
    per_chunk = max(1, chunk_elements // max(1, x.numel()))
    errors, scales, zeros = [], [], []
    for a in shrink.split(per_chunk):
        a = a.reshape(-1, *([1] * x.dim()))  # (n, 1, ..., 1)
        scale, zero = qparams_from_range(a * xmin, a * xmax, bits, symmetric)
        x_hat = fake_quantize(x.unsqueeze(0), scale, zero, qmin, qmax)
        err = (x_hat - x).abs().pow(p)
        dims = [d + 1 for d in _reduce_dims(x, channel_axis)]
        errors.append(err.sum(dim=dims, keepdim=True))
        scales.append(scale.expand_as(errors[-1]))
        zeros.append(zero.expand_as(errors[-1]))
    best = torch.cat(errors).argmin(dim=0, keepdim=True)  # first minimum: min-max wins ties
    pick = lambda t: torch.cat(t).gather(0, best)[0]  # noqa: E731
    scale, zero = pick(scales), pick(zeros)
    shape = _keep_shape(x, channel_axis)
    return scale.reshape(shape), zero.reshape(shape)
