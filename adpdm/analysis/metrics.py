"""Pure tensor maths of the sensitivity analysis: output errors per step, scores, activation ranges.

Notation (one sampling run of K steps, rows = recorded denoiser inputs):

    e_k  = mean over the trajectories of ||eps_q - eps_fp||^2 / ||eps_fp||^2 at step k
    b_k  = |d x_{k+1} / d eps| of the sampler (:func:`adpdm.sampling.eps_sensitivity`)
    score = sum_k b_k^2 e_k / sum_k b_k^2     ("trajectory-weighted" relative error)

Under classifier-free guidance eps is the guided output ``u + s (c - u)`` of the two branches,
the quantity the sampler actually uses.
"""

from __future__ import annotations

import torch

from ..nn.stats import StepStatistics


def relative_error(q: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """(N,) ``||q_i - fp_i||^2 / ||fp_i||^2`` per row of two (N, ...) tensors."""
    diff = (q - fp).flatten(1).double().pow(2).sum(1)
    return diff / fp.flatten(1).double().pow(2).sum(1).clamp_min(1e-30)


def guided(
    out: torch.Tensor, sample: torch.Tensor, step: torch.Tensor, branch: torch.Tensor, scale: float, num_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided outputs ``u + s (c - u)`` of paired branch rows, and their steps.

    Args:
        out: (N, ...) denoiser outputs, one per recorded row.
        sample, step, branch: (N,) row keys; branch 0 = conditional, 1 = unconditional.
        scale: the guidance scale s.
        num_steps: K (to key rows by (sample, step)).

    Returns:
        ``(eps, step)`` with one row per (sample, step); unchanged when there is no branch 1.
    """
    cond = branch == 0
    if bool(cond.all()):
        return out, step
    key = sample * num_steps + step
    order_c, order_u = key[cond].argsort(), key[~cond].argsort()
    if not torch.equal(key[cond][order_c], key[~cond][order_u]):
        raise ValueError("guided rows must come in (conditional, unconditional) pairs of the same sample and step")
    c, u = out[cond][order_c], out[~cond][order_u]
    return u + scale * (c - u), step[cond][order_c]


def step_means(values: torch.Tensor, step: torch.Tensor, num_steps: int) -> torch.Tensor:
    """(K,) mean of ``values`` over the rows of each step (0 for a step without rows)."""
    total = torch.zeros(num_steps, dtype=torch.float64).index_add_(0, step.cpu(), values.double().cpu())
    return total / torch.bincount(step.cpu(), minlength=num_steps).clamp_min(1)


def weighted_score(per_step: torch.Tensor, sensitivity: torch.Tensor) -> float:
    """``sum_k b_k^2 e_k / sum_k b_k^2``: the step errors weighted by how far they move the sampler."""
    w = sensitivity.double().pow(2)
    return float((w * per_step.double()).sum() / w.sum().clamp_min(1e-30))


def step_ranges(stats: StepStatistics, percentile: float) -> dict[str, torch.Tensor]:
    """Per-step ``min``, ``max`` (exact) and ``low`` / ``high`` percentiles (of the kept sample), each (K,).

    ``high`` is the ``percentile``-th percentile, ``low`` the ``100 - percentile``-th; NaN for a
    step that was not observed.
    """
    k = stats.num_steps
    sig = stats.signature()  # (K, 6): mean, std, min, max, p1, p99
    q = torch.tensor([1.0 - percentile / 100.0, percentile / 100.0])
    low, high = torch.full((k,), float("nan")), torch.full((k,), float("nan"))
    for step in range(k):
        values = stats.values(step)
        if values is not None and values.numel():
            low[step], high[step] = torch.quantile(values.float().cpu(), q)
    return {"min": sig[:, 2], "max": sig[:, 3], "low": low, "high": high}


def range_variation(low: torch.Tensor, high: torch.Tensor) -> float:
    """Widest over narrowest per-step range ``high - low`` (1 = the same range at every step)."""
    width = (high - low)[~torch.isnan(high - low)]
    if width.numel() == 0:
        return float("nan")
    return float(width.max() / width.min().clamp_min(1e-12))
