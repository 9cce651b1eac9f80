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


def fake_quantize_reference(
    x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """:func:`fake_quantize` written with autograd primitives (slower; the definition tested against)."""
    zero = round_ste(zero)
    q = torch.clamp(round_ste(x / scale) + zero, qmin, qmax)
    return (q - zero) * scale


def _reduce_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a broadcast gradient back to the shape of ``like``."""
    return grad.sum_to_size(like.shape) if grad.shape != like.shape else grad


class _FakeQuant(torch.autograd.Function):
    """One-node fake quantization that keeps the clipped codes and the in-range mask for backward.

    Gradients (straight-through rounding, ``m`` = code inside the range, ``q`` = clipped code):
        d/dx = m,   d/ds = (q - z) - m * x / s,   d/dz = -s * (1 - m)
    which is what autograd gives for :func:`fake_quantize_reference`.
    """

    @staticmethod
    def forward(ctx, x, scale, zero, qmin, qmax):  # noqa: ANN001, ANN205
        z = torch.round(zero)
        u = torch.round(x / scale).add_(z)
        q = u.clamp(qmin, qmax)
        mask = q == u
        q = q.sub_(z)
        ctx.save_for_backward(x, scale, zero, q, mask)
        return q * scale

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, scale, zero, q, mask = ctx.saved_tensors
        gm = torch.where(mask, grad, 0.0)
        gs = gz = None
        if ctx.needs_input_grad[1]:
            gs = _reduce_to(grad * q - gm * x / scale, scale)
        if ctx.needs_input_grad[2]:
            gz = _reduce_to(gm - grad, zero) * scale
        return gm if ctx.needs_input_grad[0] else None, gs, gz, None, None


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Quantize and dequantize ``x``; differentiable in ``x``, ``scale`` and ``zero`` (LSQ+ style).

    The gradient w.r.t. ``x`` is 1 inside the representable range and 0 where ``x`` is clipped.
    ``zero`` may be a float parameter: it is rounded with a straight-through estimator.
    ``scale`` and ``zero`` broadcast against ``x``.
    """
    if not (x.requires_grad or scale.requires_grad or zero.requires_grad) or not torch.is_grad_enabled():
        z = torch.round(zero)
        return torch.round(x / scale).add_(z).clamp_(qmin, qmax).sub_(z).mul_(scale)
    return _FakeQuant.apply(x, scale, zero, qmin, qmax)


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


def _per_row(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(P,) values, P = 1 or the batch size, shaped to broadcast against ``x`` (B, ...)."""
    return v.reshape(-1, *([1] * (x.dim() - 1)))


class _MixtureFakeQuant(torch.autograd.Function):
    """``sum_g pi[:, g] * fake_quantize(x, s_g, z_g)`` as one node (see :func:`mixture_fake_quantize`).

    Forward keeps each group's clipped code ``q_g - z_g`` and in-range mask ``m_g``, so backward
    needs no recomputation; with ``r(.)`` the per-sample sum over non-batch dims,
    ``v_g = x / s_g`` and ``w_g`` the per-sample weight pi[:, g]:
        d/dpi_g = s_g r(grad (q_g - z_g))            d/dx = sum_g w_g m_g grad
        d/ds_g  = sum_b w_g [r(grad (q_g - z_g)) - r(grad m_g v_g)]
        d/dz_g  = s_g sum_b w_g [r(grad m_g) - r(grad)]
    """

    @staticmethod
    def forward(ctx, x, scales, zeros, pi, qmin, qmax):  # noqa: ANN001, ANN205
        out = torch.zeros_like(x)
        codes, masks = [], []
        for g in range(scales.shape[0]):
            z = torch.round(zeros[g])
            u = torch.round(x / scales[g]).add_(z)
            q = u.clamp(qmin, qmax)
            masks.append(q == u)
            q = q.sub_(z)
            codes.append(q)
            out.addcmul_(q, _per_row(pi[:, g] * scales[g], x))
        ctx.save_for_backward(x, scales, zeros, pi, *codes, *masks)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, scales, zeros, pi, *rest = ctx.saved_tensors
        groups = scales.shape[0]
        codes, masks = rest[:groups], rest[groups:]
        b = x.shape[0]

        def r(t: torch.Tensor) -> torch.Tensor:  # (B,) per-sample sums
            return t.reshape(b, -1).sum(1)

        w_all = pi.expand(b, groups)  # (B, G)
        gx = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        gs, gz = torch.zeros_like(scales), torch.zeros_like(zeros)
        gpi = torch.zeros(b, groups, dtype=pi.dtype, device=pi.device)
        r_grad = r(grad)
        for g in range(groups):
            s, w = scales[g], w_all[:, g]
            r_q = r(grad * codes[g])
            gm = torch.where(masks[g], grad, 0.0)
            r_m = r(gm)
            r_mv = r(gm * x) / s
            gpi[:, g] = s * r_q
            gs[g] = (w * (r_q - r_mv)).sum()
            gz[g] = s * (w * (r_m - r_grad)).sum()
            if gx is not None:
                gx.addcmul_(gm, _per_row(w, x))
        if pi.shape[0] == 1:
            gpi = gpi.sum(0, keepdim=True)
        return gx, gs, gz, gpi, None, None


def mixture_fake_quantize(
    x: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, pi: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """Soft mixture of G fake quantizers: ``sum_g pi[:, g] * fake_quantize(x, scales[g], zeros[g])``.

    Args:
        x: activations (B, ...).
        scales, zeros: (G,) per-group scale and zero point.
        pi: (1, G) weights for the whole batch or (B, G) per sample (rows of a softmax).

    Differentiable in ``x``, ``scales``, ``zeros`` and ``pi`` with the gradients of
    :func:`fake_quantize`; one autograd node that keeps only its inputs, so a G-group mixture
    costs about G passes over ``x`` instead of G small graphs of saved intermediates.
    """
    if pi.dim() != 2 or pi.shape[1] != scales.shape[0] or pi.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"pi must be (1, G) or (B, G) with G={scales.shape[0]}, B={x.shape[0]}; got {tuple(pi.shape)}")
    return _MixtureFakeQuant.apply(x, scales, zeros, pi, qmin, qmax)
