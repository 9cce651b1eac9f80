"""Timestep-grouped activation quantizer (method.md section 2) and its skip-split variant."""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..context import current_step
from ..state import QuantState
from ..tensor.fake_quant import fake_quantize, lp_search_qparams, mixture_fake_quantize, qparams_from_range, qrange
from .partition import StepPartition
from .stats import StepStatistics

logger = logging.getLogger(__name__)

HARD_EPS = 1e-3  # mixture rows with a top weight >= 1 - HARD_EPS use that group alone (see ActQuantizer)


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast (1,) or (B,) values against ``x`` of shape (B, ...)."""
    if v.numel() == 1:
        return v.reshape(())
    if v.shape[0] != x.shape[0]:
        raise ValueError(f"step_context holds {v.shape[0]} step indices but the batch has {x.shape[0]} samples")
    return v.reshape(-1, *([1] * (x.dim() - 1)))


class ActQuantizer(nn.Module):
    """An activation quantizer with G groups of (scale, zero point), selected by the sampling step.

    The step comes from :func:`adpdm.step_context`. In search mode the output is the mixture
    ``sum_g pi_{k,g} Q_g(x)``; otherwise step k uses group ``partition.table[k]``.

    Args:
        bits: bit width.
        symmetric: signed codes with zero point 0.
        partition: the step->group partition; shared ones are referenced, not owned.
        own_partition: register ``partition`` as a submodule (per-layer partition).
        init: range initialisation, "lp" or "minmax".
        lp_norm: p of the Lp search.
        reservoir: values kept per step for range search and statistics.
    """

    def __init__(
        self,
        bits: int,
        symmetric: bool,
        partition: StepPartition,
        own_partition: bool = False,
        init: str = "lp",
        lp_norm: float = 2.4,
        reservoir: int = 2048,
    ) -> None:
        super().__init__()
        self.bits, self.symmetric, self.init, self.lp_norm = bits, symmetric, init, lp_norm
        self.qmin, self.qmax = qrange(bits, symmetric)
        if own_partition:
            self.partition = partition
        else:
            self.__dict__["partition"] = partition  # shared: not registered, saved once at the model root
        groups = partition.groups
        self.scale = nn.Parameter(torch.ones(groups))
        self.zero_point = nn.Parameter(torch.zeros(groups))
        self.stats = StepStatistics(partition.num_steps, reservoir)
        self.state = QuantState.FP

    @property
    def groups(self) -> int:
        return self.partition.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.state == QuantState.FP:
            return x
        step = current_step()
        if self.state == QuantState.CALIBRATING:
            self.stats.observe(x.detach(), step)
            return x
        if self.state == QuantState.RECONSTRUCTING and self.partition.searching:
            return self._mixture(x, step)
        return self._hard(x, self.partition.hard_groups(step))

    def _mixture(self, x: torch.Tensor, step: torch.Tensor | int | None) -> torch.Tensor:
        """The soft mixture, truncated: a row whose top weight is at least ``1 - HARD_EPS`` uses its top
        group alone (output within ``HARD_EPS`` of the mixture; its alpha gradient, of the same order,
        is dropped). Late in the temperature schedule most rows are such, so the search costs about
        one quantizer instead of G."""
        pi = self.partition.probs(step)  # (1 or B, G)
        if pi.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"step_context holds {pi.shape[0]} step indices but the batch has {x.shape[0]} samples")
        top, g = pi.detach().max(dim=1)
        hard = top >= 1.0 - HARD_EPS
        if bool(hard.all()):
            return self._hard(x, g)
        if pi.shape[0] == 1 or not bool(hard.any()):
            return mixture_fake_quantize(x, self.scale, self.zero_point, pi, self.qmin, self.qmax)
        rows_hard, rows_soft = hard.nonzero().flatten(), (~hard).nonzero().flatten()
        y_hard = self._hard(x[rows_hard], g[rows_hard])
        y_soft = mixture_fake_quantize(x[rows_soft], self.scale, self.zero_point, pi[rows_soft], self.qmin, self.qmax)
        return x.new_zeros(x.shape).index_copy(0, rows_hard, y_hard).index_copy(0, rows_soft, y_soft)

    def _hard(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        scale, zero = _per_sample(self.scale[g], x), _per_sample(self.zero_point[g], x)
        return fake_quantize(x, scale, zero, self.qmin, self.qmax)

    @torch.no_grad()
    def init_ranges(self) -> None:
        """Initialise every group's scale and zero point from the statistics of its steps."""
        if not self.stats.observed:
            raise RuntimeError("no activations were observed: run the model inside `adpdm.calibrate(model)`")
        table = self.partition.table.cpu()
        for g in range(self.groups):
            steps = (table == g).nonzero().flatten().tolist()
            values, xmin, xmax = self.stats.pooled(steps)
            if self.init == "minmax":
                scale, zero = qparams_from_range(xmin, xmax, self.bits, self.symmetric)
            else:
                scale, zero = lp_search_qparams(values, self.bits, self.symmetric, p=self.lp_norm, xrange=(xmin, xmax))
            self.scale[g] = scale.to(self.scale)
            self.zero_point[g] = zero.to(self.zero_point)

    @torch.no_grad()
    def freeze(self) -> None:
        """Round the zero points, stop learning, and drop the statistics."""
        self.zero_point.copy_(torch.round(self.zero_point).clamp(self.qmin, self.qmax))
        self.scale.requires_grad_(False)
        self.zero_point.requires_grad_(False)
        self.stats.clear()
        self.state = QuantState.FROZEN

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}, groups={self.groups}"


class SplitActQuantizer(nn.Module):
    """Quantizes the two parts of a concatenated skip-connection input separately (channel dim 1).

    The upsampling path concatenates its hidden state with a skip connection whose range can
    differ by orders of magnitude; one scale for both would waste most of the levels.
    """

    def __init__(self, split: int, first: ActQuantizer, second: ActQuantizer) -> None:
        super().__init__()
        self.split = split
        self.parts = nn.ModuleList([first, second])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, : self.split], x[:, self.split :]
        return torch.cat([self.parts[0](a), self.parts[1](b)], dim=1)

    def extra_repr(self) -> str:
        return f"split={self.split}"
