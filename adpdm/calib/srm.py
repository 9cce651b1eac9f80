"""Calibration timesteps by structural risk minimisation (SRM, method.md section 3).

Our reading of the paper's criterion (its exact formula is not public in text form):

1. **Signatures.** f_k, the activation signature of step k: for every activation quantizer the
   mean, std, min, max, 1st and 99th percentile of its input at step k (observed on the first
   ``signature_samples`` trajectories), each feature standardised over steps
   (:func:`step_signatures`, :func:`normalise_features`).
2. **Empirical risk.** r_k, the relative output error ``||eps_q - eps_fp||^2 / ||eps_fp||^2`` of
   the initial quantized model at step k on the same trajectories (:func:`step_risks`).
3. **Selection.** A greedy selection adds, one at a time, the step maximising

       score(k) = r~_k - gamma * m~_k,   m_k = MMD^2({f_j : all j}, {f_j : j in S + k})

   where r~ is r scaled to [0, 1], MMD^2 the squared maximum mean discrepancy with a Gaussian
   kernel whose bandwidth is the median pairwise distance, and m~ the rank of m_k among the
   round's candidates scaled to [0, 1] (:func:`srm_select`). The scaling matters: adding one
   step to a set of n changes MMD^2 by O(1/n), so raw MMD^2 would leave the risk term to decide
   alone after a few rounds, and min-max scaling would let one outlying step squash all other
   candidates together; ranks are free of both, and gamma = 1 weighs the two terms equally in
   every round. High-risk steps are informative; the MMD term keeps the selected set
   representative of the whole trajectory, which bounds the risk on the steps left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..quantize import act_quantizers, quantization_disabled
from .data import CalibrationSet, forward_rows, relative_error
from .timesteps import uniform_steps


def step_signatures(model: nn.Module) -> torch.Tensor:
    """(K, 6 * quantizers) per-step activation statistics of every quantizer, as last observed."""
    return torch.cat([q.stats.signature() for _, q in act_quantizers(model)], dim=1)


@torch.no_grad()
def step_risks(model: nn.Module, data: CalibrationSet, batch: int, device: torch.device) -> torch.Tensor:
    """(K,) mean relative output error of the quantized ``model`` against FP at each step of ``data``."""
    q_out = forward_rows(model, data, batch, device)
    with quantization_disabled(model):
        fp_out = forward_rows(model, data, batch, device)
    err = relative_error(q_out, fp_out)
    k = data.num_steps
    return torch.zeros(k).index_add_(0, data.step, err) / torch.bincount(data.step, minlength=k).clamp_min(1)


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """exp(-||a_i - b_j||^2 / (2 h^2)), shape (len(a), len(b))."""
    return torch.exp(-torch.cdist(a, b).square() / (2 * bandwidth**2))


def median_bandwidth(f: torch.Tensor) -> float:
    """The median heuristic: median pairwise distance (1 if degenerate)."""
    d = torch.cdist(f, f)
    off = d[~torch.eye(len(f), dtype=torch.bool)]
    h = float(off.median()) if off.numel() else 1.0
    return h if h > 0 else 1.0


def mmd2(kernel: torch.Tensor, selected: list[int]) -> float:
    """Biased MMD^2 between all rows and the ``selected`` rows, from the full kernel matrix."""
    s = torch.as_tensor(selected)
    return float(kernel.mean() + kernel[s][:, s].mean() - 2 * kernel[:, s].mean())


@dataclass
class SRMResult:
    """The steps chosen by :func:`srm_select` with the scores that chose them."""

    steps: list[int]
    scores: list[float]  # score of each step when it was added, in selection order
    order: list[int]  # steps in selection order
    risk: list[float]  # normalised risk r~ of every step
    mmd2: float  # MMD^2 between the final set and the whole trajectory
    bandwidth: float
    gamma: float
    uniform_mmd2: float = field(default=0.0)  # for comparison: MMD^2 of the uniform choice


def srm_select(signatures: torch.Tensor, risk: torch.Tensor, n: int, gamma: float = 1.0) -> SRMResult:
    """Greedy structural-risk-minimisation selection of n of K steps.

    Args:
        signatures: (K, F) activation signature per step (normalise features beforehand).
        risk: (K,) empirical risk per step (any scale; scaled to [0, 1] here).
        n: number of steps to select.
        gamma: weight of the MMD term.
    """
    num_steps = signatures.shape[0]
    if not 1 <= n <= num_steps:
        raise ValueError(f"cannot select {n} of {num_steps} steps")
    f = signatures.double()
    r = risk.double()
    r = (r - r.min()) / (r.max() - r.min()) if r.max() > r.min() else torch.zeros_like(r)
    h = median_bandwidth(f)
    kernel = gaussian_kernel(f, f, h)
    chosen: list[int] = []
    scores: list[float] = []
    for _ in range(n):
        candidates = [k for k in range(num_steps) if k not in chosen]
        m = torch.tensor([mmd2(kernel, chosen + [k]) for k in candidates], dtype=torch.float64)
        m = m.argsort().argsort().double() / max(1, len(candidates) - 1)  # rank in [0, 1]
        score = r[candidates] - gamma * m
        best = int(score.argmax())
        chosen.append(candidates[best])
        scores.append(float(score[best]))
    return SRMResult(
        steps=sorted(chosen), scores=scores, order=chosen, risk=r.tolist(), mmd2=mmd2(kernel, chosen),
        bandwidth=h, gamma=gamma, uniform_mmd2=mmd2(kernel, uniform_steps(num_steps, n)),
    )  # fmt: skip


def normalise_features(f: torch.Tensor) -> torch.Tensor:
    """Standardise each feature column over steps (NaN-free; constant columns become 0)."""
    f = torch.nan_to_num(f.double())
    std = f.std(dim=0, keepdim=True)
    return torch.where(std > 0, (f - f.mean(dim=0, keepdim=True)) / std.clamp_min(1e-12), torch.zeros_like(f))
