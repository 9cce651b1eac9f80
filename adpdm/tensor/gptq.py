"""GPTQ (Frantar et al., 2022): second-order rounding of a layer's weights, tensors in, codes out.

Notation, for one layer with weight W (out x n, a Conv2d's flattened to n = C_in k_h k_w) and the
layer's calibration inputs X (n x rows; a convolution's im2col patches):

    H = 2 X X^T / rows                    the Hessian of ||W X - W_q X||^2 in each row of W
    for column j = 1..n, in order:
        q_j   = quantize(w_j)             with the row's fixed scale and zero point
        e_j   = (w_j - q_j) / [U]_jj      U: the upper Cholesky factor of H^-1
        w_k  -= e_j [U]_jk  for k > j     the error of column j moved onto the columns not yet rounded

Each column's rounding error is compensated by the columns after it, as far as the inputs let them
(optimal brain surgeon's update, one column at a time); the codes it returns usually stay within one
step of round-to-nearest's. Columns are processed in blocks whose updates to the rest are applied at
once (the paper's lazy batch), which gives the same result as the plain loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_inputs(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows the weights multiply: (rows, n) from a Linear's (..., in) or a Conv2d's (N, C, H, W) input."""
    if isinstance(module, torch.nn.Conv2d):
        if module.groups != 1:
            raise ValueError("GPTQ here covers ungrouped convolutions")
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, n, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


def add_to_hessian(hessian: torch.Tensor | None, rows: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
    """Running ``2 X X^T / rows`` with ``rows`` (r, n) added; returns the new mean and the row count."""
    rows = rows.double()
    total = count + rows.shape[0]
    update = 2.0 * rows.T @ rows
    if hessian is None:
        return update / total, total
    return hessian * (count / total) + update / total, total


def gptq_codes(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    qmin: int,
    qmax: int,
    damp: float = 0.01,
    block: int = 128,
) -> torch.Tensor:
    """Integer codes (a float tensor, ``weight``'s shape) of ``weight`` with per-output-channel ``scale`` and
    ``zero`` (shape (out, 1, ...)), chosen by GPTQ under ``hessian`` (n x n, n = weight[0].numel()).

    ``damp`` adds ``damp * mean(diag H)`` to the diagonal (numerical stability); inputs that never
    vary (a zero diagonal) leave their columns at round-to-nearest.
    """
    shape = weight.shape
    w = weight.detach().reshape(shape[0], -1).double().clone()  # (out, n)
    s, z = scale.reshape(-1, 1).double(), torch.round(zero.reshape(-1, 1).double())
    n = w.shape[1]
    if hessian.shape != (n, n):
        raise ValueError(f"hessian must be ({n}, {n}) for a weight of shape {tuple(shape)}, got {tuple(hessian.shape)}")
    h = hessian.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h += damp * torch.diag(h).mean() * torch.eye(n, dtype=h.dtype)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)  # (n, n)
    codes = torch.empty_like(w)
    for b0 in range(0, n, block):
        b1 = min(b0 + block, n)
        wb = w[:, b0:b1].clone()
        errors = torch.empty_like(wb)
        for j in range(b1 - b0):
            col = wb[:, j : j + 1]
            q = torch.clamp(torch.round(col / s) + z, qmin, qmax)  # (out, 1)
            codes[:, b0 + j : b0 + j + 1] = q
            err = (col - (q - z) * s) / u[b0 + j, b0 + j]
            wb[:, j + 1 :] -= err @ u[b0 + j : b0 + j + 1, b0 + j + 1 : b1]
            errors[:, j : j + 1] = err
        w[:, b1:] -= errors @ u[b0:b1, b1:]  # the block's errors onto every later column at once
    return codes.reshape(shape).to(weight.dtype)
