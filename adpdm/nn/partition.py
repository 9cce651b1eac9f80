"""The step->group partition: importance logits alpha (K x G) and the hard table."""

from __future__ import annotations

import torch
from torch import nn

from ..context import StepIndex


def contiguous_table(num_steps: int, groups: int) -> torch.Tensor:
    """Step k -> group floor(k * G / K): G contiguous chunks of the trajectory."""
    return torch.arange(num_steps) * groups // num_steps


class StepPartition(nn.Module):
    """Which of the G groups of quantization parameters serves sampling step k.

    During the differentiable search the weights of step k are ``pi_k = softmax(alpha_k / tau)``;
    otherwise (and always after freezing) step k uses group ``table[k]``.

    Args:
        num_steps: K, the number of sampling steps.
        groups: G, the number of groups.
        init_logit: logit given to each step's initial (contiguous) group.
    """

    def __init__(self, num_steps: int, groups: int, init_logit: float = 4.0) -> None:
        super().__init__()
        self.num_steps, self.groups = num_steps, groups
        self.init_logit = init_logit
        self.register_buffer("table", contiguous_table(num_steps, groups))
        self.alpha = nn.Parameter(torch.zeros(num_steps, groups))
        self.set_table(self.table)
        self.tau = 1.0
        self.searching = False

    @torch.no_grad()
    def set_table(self, table: torch.Tensor) -> None:
        """Adopt a hard assignment; alpha is reset to favour it by ``init_logit``."""
        table = torch.as_tensor(table, dtype=torch.long, device=self.table.device)
        if table.shape != (self.num_steps,) or int(table.min()) < 0 or int(table.max()) >= self.groups:
            raise ValueError(f"a step->group table needs shape ({self.num_steps},) and values in [0, {self.groups})")
        self.table.copy_(table)
        self.alpha.zero_()
        self.alpha.scatter_(1, table[:, None], self.init_logit)

    def _steps(self, step: StepIndex | None) -> torch.Tensor:
        if step is None:
            if self.groups == 1:
                return torch.zeros(1, dtype=torch.long, device=self.table.device)
            raise RuntimeError(
                f"this model has {self.groups} timestep groups: wrap each denoiser call in "
                "`with adpdm.step_context(k):` so the quantizers know the sampling step"
            )
        steps = torch.as_tensor(step, dtype=torch.long, device=self.table.device).reshape(-1)
        if int(steps.max()) >= self.num_steps:
            raise ValueError(f"step index {int(steps.max())} out of range for {self.num_steps} sampling steps")
        return steps

    def hard_groups(self, step: StepIndex | None) -> torch.Tensor:
        """Group index per sample, shape (1,) for an int step or (B,) for a step tensor."""
        return self.table[self._steps(step)]

    def probs(self, step: StepIndex | None) -> torch.Tensor:
        """Soft group weights pi, shape (1, G) or (B, G)."""
        return torch.softmax(self.alpha[self._steps(step)] / self.tau, dim=-1)

    def entropy(self) -> torch.Tensor:
        """Mean over steps of the entropy H(pi_k); zero when every pi_k is one-hot."""
        p = torch.softmax(self.alpha / self.tau, dim=-1)
        return -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()

    @torch.no_grad()
    def harden(self) -> torch.Tensor:
        """Freeze the search: ``table[k] = argmax_g alpha[k, g]``; returns the table."""
        self.table.copy_(self.alpha.argmax(dim=1))
        self.searching = False
        return self.table

    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of ``(alpha, table)``, for :meth:`restore`."""
        return self.alpha.detach().clone(), self.table.clone()

    @torch.no_grad()
    def restore(self, snapshot: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Return to a :meth:`snapshot` exactly (alpha and table)."""
        alpha, table = snapshot
        self.alpha.copy_(alpha)
        self.table.copy_(table)

    def extra_repr(self) -> str:
        return f"num_steps={self.num_steps}, groups={self.groups}"
