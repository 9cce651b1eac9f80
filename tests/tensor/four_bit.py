"""A random weight with its 4-bit per-channel min-max grid, shared by the rounding tests."""

import torch

from adpdm.tensor.fake_quant import minmax_range, qparams_from_range


def four_bit_weight() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    w = torch.randn(8, 16)
    scale, zero = qparams_from_range(*minmax_range(w, channel_axis=0), 4, False)
    return w, scale, zero
