"""The initial step->group partition, from per-step activation statistics (method.md section 2).

Before any reconstruction, the K sampling steps are cut into G contiguous segments so that the
steps of one segment have similar activation ranges. For every activation quantizer a and step
k the feature is its observed range ``(p1_{a,k}, p99_{a,k})`` divided by the quantizer's span
over all steps (``max_k p99 - min_k p1``), so that every quantizer weighs alike whatever its
scale. The cost of a segment is the sum of squared deviations of its steps' features from the
segment mean (what one shared range per segment loses), and a dynamic programme finds the G
segments of least total cost exactly:

    D[g][j] = min_{i < j} D[g-1][i] + cost(i, j),   D[1][j] = cost(0, j)

over steps ``[i, j)``, in O(G K^2) with prefix sums. Each group's range then starts from every
step it serves (``MethodSpec.ranges_from = "all"``), so no step is served by a range fitted
without it; the search during reconstruction may move calibrated steps to another group.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.act_quant import ActQuantizer
from ..quantize import act_quantizers, partitions

P_LOW, P_HIGH = 4, 5  # columns of StepStatistics.signature(): 1st and 99th percentile


def range_features(quantizers: list[ActQuantizer]) -> torch.Tensor:
    """(K, 2 * len(quantizers)) per-step (p1, p99) of each quantizer, divided by its span over steps."""
    cols = []
    for q in quantizers:
        sig = q.stats.signature()[:, [P_LOW, P_HIGH]].double()
        if torch.isnan(sig).any():
            missing = torch.isnan(sig).any(dim=1).nonzero().flatten().tolist()
            raise RuntimeError(f"steps {missing} were not observed: observe every step before partitioning")
        span = (sig[:, 1].max() - sig[:, 0].min()).clamp_min(1e-12)
        cols.append(sig / span)
    return torch.cat(cols, dim=1)


def segment_steps(features: torch.Tensor, groups: int) -> torch.Tensor:
    """(K,) step -> group table of the ``groups`` contiguous segments of least within-segment
    squared deviation of ``features`` (K, F); groups are numbered in step order."""
    k = features.shape[0]
    if not 1 <= groups <= k:
        raise ValueError(f"cannot cut {k} steps into {groups} groups")
    f = features.double()
    zero = f.new_zeros(1, f.shape[1])
    s1 = torch.cat([zero, f.cumsum(0)])  # s1[j] = sum of rows [0, j)
    s2 = torch.cat([f.new_zeros(1), f.pow(2).sum(1).cumsum(0)])

    def cost(i: torch.Tensor, j: int) -> torch.Tensor:  # SSE of rows [i, j) for a vector of starts i
        n = (j - i).double()
        return (s2[j] - s2[i]) - ((s1[j] - s1[i]).pow(2).sum(1)) / n

    inf = float("inf")
    best = torch.full((groups + 1, k + 1), inf, dtype=torch.float64)
    start = torch.zeros(groups + 1, k + 1, dtype=torch.long)
    best[0, 0] = 0.0
    for g in range(1, groups + 1):
        for j in range(g, k + 1):
            i = torch.arange(g - 1, j)
            total = best[g - 1, i] + cost(i, j)
            m = int(total.argmin())
            best[g, j], start[g, j] = total[m], int(i[m])
    table = torch.empty(k, dtype=torch.long)
    j = k
    for g in range(groups, 0, -1):
        i = int(start[g, j])
        table[i:j] = g - 1
        j = i
    return table


@torch.no_grad()
def partition_from_statistics(model: nn.Module) -> dict[str, list[int]]:
    """Set every partition of ``model`` with G > 1 to the segments of its quantizers' observed
    ranges (one shared table from all quantizers, or one per quantizer); returns the tables."""
    shared = partitions(model)
    quantizers = list(act_quantizers(model))
    users = [("shared", shared[0], [q for _, q in quantizers])] if len(shared) == 1 else [
        (name, q.partition, [q]) for name, q in quantizers
    ]  # fmt: skip
    tables = {}
    for name, part, qs in users:
        if part.groups > 1:
            part.set_table(segment_steps(range_features(qs), part.groups))
        tables[name] = part.table.tolist()
    return tables
