"""The differentiable step->group search, run inside block-wise reconstruction (method.md section 2).

Notation (K sampling steps, G groups; one shared partition, or one per quantizer):
    pi_k   = softmax(alpha_k / tau)                      group weights of step k (mixture)
    Q(x;k) = sum_g pi_{k,g} Q_g(x)                       the quantizer output while searching
    L_H    = lambda * L_b(0) * mean_k H(pi_k)             entropy term added to unit b's loss
    g*(k)  = argmax_g alpha_{k,g}                         the hard table after every unit

1. Mixture: which partitions a unit searches. The shared partition (one table for the whole
   network) is searched by every unit; with a per-layer partition, a unit searches those of its
   own quantizers. The alpha of a shared partition carries over from unit to unit.
2. Entropy: drives every pi_k to one-hot. It is scaled by the unit's initial error L_b(0), so one
   lambda suits units of very different output magnitude (our choice; the paper gives none).
3. Temperature: tau is cosine-annealed from ``tau_start`` to ``tau_end`` over the whole run
   (all units, the searched iterations of each), not restarted per unit.
4. Hardening: a unit searches during its first ``iters`` iterations (``ReconConfig.search_fraction`` of
   them); then the table
   follows argmax alpha and the unit's remaining iterations fit its scales and rounding to that
   hard table, the one :func:`adpdm.freeze` keeps. The unit is evaluated (and the next units are
   fitted) with it.
5. The whole model decides a table change (:meth:`GroupSearch.keep_if_better`). A shared table serves
   every quantizer of the network, but a unit's loss sees its own: on ``embedded:mnist`` at W8A6 the
   search moved single calibration steps to another group (step 5 from group 0 to 2), the unit's
   held-out error fell, and the whole model's output error at that step rose 12x, because the layers
   reconstructed before it now quantize step 5 with ranges fitted to steps 13-18
   (``studies/row-error/recon_steps.py``). So a changed table is kept only if the whole model's
   held-out error (every step, weighted by how far it moves the sampler) is lower with it than with
   the table the unit started from; otherwise the old table (and alpha) is restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..nn.act_quant import ActQuantizer
from ..nn.partition import StepPartition
from ..quantize import PARTITION_ATTR
from ..tensor.adaround import cosine_anneal


def searched_partitions(model: nn.Module, quantizers: list[ActQuantizer]) -> list[StepPartition]:
    """The shared partition, or (per-layer partition) those of the unit's own quantizers."""
    shared = getattr(model, PARTITION_ATTR, None)
    if shared is not None:
        return [shared]
    return list({id(q.partition): q.partition for q in quantizers}.values())


class GroupSearch:
    """The step->group search of one unit.

    Args:
        parts: the partitions the unit searches (:func:`searched_partitions`).
        index: the unit's position in the run; ``total_units`` the run's length.
        iters: optimisation iterations of the search in each unit (the unit may run more).
        tau_start: temperature at the start of the run; ``tau_end`` at its end.
        entropy_weight: lambda.
        error_scale: the unit's initial error L_b(0).
    """

    def __init__(
        self,
        parts: list[StepPartition],
        index: int,
        total_units: int,
        iters: int,
        tau_start: float,
        tau_end: float,
        entropy_weight: float,
        error_scale: float,
    ) -> None:
        self.parts, self.index, self.total_units, self.iters = parts, index, total_units, iters
        self.tau_start, self.tau_end = tau_start, tau_end
        self.entropy_weight, self.error_scale = entropy_weight, error_scale

    def params(self) -> list[nn.Parameter]:
        return [p.alpha for p in self.parts]

    @contextlib.contextmanager
    def searching(self) -> Iterator[None]:
        """Quantizers of the searched partitions use the mixture inside the block."""
        for p in self.parts:
            p.searching = True
        try:
            yield
        finally:
            for p in self.parts:
                p.searching = False

    def active(self, it: int) -> bool:
        """Whether iteration ``it`` of the unit still searches."""
        return it < self.iters

    def set_temperature(self, it: int) -> None:
        """tau at iteration ``it`` of this unit, on the cosine schedule of the whole run."""
        progress = (self.index * self.iters + it) / max(1, self.total_units * self.iters)
        tau = cosine_anneal(int(progress * 1000), 1000, self.tau_start, self.tau_end)
        for p in self.parts:
            p.tau = tau

    def entropy_loss(self) -> torch.Tensor | None:
        """``lambda * L_b(0) * sum over partitions of mean_k H(pi_k)`` (None when lambda is 0)."""
        if not self.parts or self.entropy_weight == 0:
            return None
        return self.entropy_weight * self.error_scale * sum(p.entropy() for p in self.parts)

    def harden(self) -> None:
        """``table[k] = argmax_g alpha[k, g]`` for every searched partition."""
        for p in self.parts:
            p.harden()

    def keep_if_better(
        self, before: list[tuple[torch.Tensor, torch.Tensor]], error: Callable[[torch.Tensor], float]
    ) -> str:
        """After :meth:`harden`: keep the new tables only if ``error(steps)`` (the whole model's held-out
        error at the sampling steps whose group changed; the other steps are served alike by both) is
        lower with them than with the ``before`` snapshots (:meth:`StepPartition.snapshot`), else
        restore those. Returns "unchanged", "kept" or "reverted"."""
        new = [p.snapshot() for p in self.parts]
        moved = torch.zeros_like(new[0][1], dtype=torch.bool) if new else None
        for n, b in zip(new, before, strict=True):
            moved |= n[1] != b[1]
        if moved is None or not moved.any():
            return "unchanged"
        steps = moved.nonzero().flatten()
        with_new = error(steps)
        for p, b in zip(self.parts, before, strict=True):
            p.restore(b)
        if with_new < error(steps):
            for p, n in zip(self.parts, new, strict=True):
                p.restore(n)
            return "kept"
        return "reverted"
