"""Which sampling steps feed the calibration set.

Step index k = 0 is the first (noisiest) step of the deployment schedule, k = K-1 the last.

- ``uniform``: every K/n steps (Q-Diffusion).
- ``normal``: PTQ4DM's normally distributed timestep calibration (NDTC): timesteps drawn from
  N(mu * K, sigma * K) in the timestep axis (t small = little noise), i.e. biased to the
  low-noise end of sampling, default mu = sigma = 0.4 as in PTQ4DM's code.
- ``random``: n distinct steps uniformly at random.
- ``srm``: structural risk minimisation (method.md section 3), see :func:`srm_select`.

Our reading of the paper's SRM criterion (its exact formula is not public in text form): a
greedy selection that adds, one at a time, the step maximising

    score(k) = r~_k - gamma * m~_k,   m_k = MMD^2({f_j : all j}, {f_j : j in S + k})

where r~ is the per-step empirical risk (output error of the initial quantized model) scaled
to [0, 1], f_j the activation signature of step j, MMD^2 the squared maximum mean discrepancy
with a Gaussian kernel whose bandwidth is the median pairwise distance, and m~ the rank of m_k
among the round's candidates scaled to [0, 1]. The scaling matters: adding one step to a set
of n changes MMD^2 by O(1/n), so raw MMD^2 would leave the risk term to decide alone after a
few rounds, and min-max scaling would let one outlying step squash all other candidates
together; ranks are free of both, and gamma = 1 weighs the two terms equally in every round. High-risk
steps are informative; the MMD term keeps the selected set representative of the whole
trajectory, which bounds the risk on the steps left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

STRATEGIES = ("uniform", "normal", "random", "srm")


def uniform_steps(num_steps: int, n: int) -> list[int]:
    """n steps evenly spread over [0, K), including the first and the last."""
    return sorted({round(i * (num_steps - 1) / max(1, n - 1)) for i in range(n)})


def normal_steps(num_steps: int, n: int, seed: int = 0, mu: float = 0.4, sigma: float = 0.4) -> list[int]:
    """n distinct steps whose timesteps are drawn from N(mu K, sigma K), clipped to the schedule."""
    gen = torch.Generator().manual_seed(seed)
    chosen: list[int] = []
    for _ in range(100 * n):
        t = round(float(torch.randn((), generator=gen)) * sigma * num_steps + mu * num_steps)
        k = num_steps - 1 - min(max(t, 0), num_steps - 1)  # small t = late step
        if k not in chosen:
            chosen.append(k)
        if len(chosen) == n:
            break
    return sorted(chosen)


def random_steps(num_steps: int, n: int, seed: int = 0) -> list[int]:
    """n distinct steps uniformly at random."""
    gen = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(num_steps, generator=gen)[:n].tolist())


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
