"""Which sampling steps feed the calibration set.

Step index k = 0 is the first (noisiest) step of the deployment schedule, k = K-1 the last.

- ``uniform``: every K/n steps (Q-Diffusion).
- ``normal``: PTQ4DM's normally distributed timestep calibration (NDTC): timesteps drawn from
  N(mu * K, sigma * K) in the timestep axis (t small = little noise), i.e. biased to the
  low-noise end of sampling, default mu = sigma = 0.4 as in PTQ4DM's code.
- ``random``: n distinct steps uniformly at random.
- ``srm``: structural risk minimisation (method.md section 3), :mod:`adpdm.calib.srm`.
"""

from __future__ import annotations

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


def choose_steps(strategy: str, num_steps: int, n: int, seed: int = 0) -> list[int]:
    """n of ``num_steps`` steps by a strategy that needs no model ("uniform", "normal", "random")."""
    if strategy == "uniform":
        return uniform_steps(num_steps, n)
    if strategy == "normal":
        return normal_steps(num_steps, n, seed)
    if strategy == "random":
        return random_steps(num_steps, n, seed)
    raise ValueError(f"strategy {strategy!r} needs the model (see adpdm.calib.srm) or is unknown; "
                     f"choose one of {STRATEGIES}")  # fmt: skip
