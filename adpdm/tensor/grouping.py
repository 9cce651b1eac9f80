"""Blocks of input channels for grouped weight quantization (one scale per block of B channels).

A weight (O, I, *k) is cut along axis 1 into ceil(I / B) blocks of B channels (the last one may be
shorter); each block at each output channel and kernel position shares one scale and zero point,
stored as (O, ceil(I / B), *k): the layout of ONNX's blocked ``DequantizeLinear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def block_rows(w: torch.Tensor, block: int) -> torch.Tensor:
    """The blocks of ``w`` as rows: (O * ceil(I / B) * prod(k), B), a short last block padded with zeros
    (zero is exactly representable by every range, so padding changes no range search)."""
    out, inp = w.shape[:2]
    blocks = -(-inp // block)
    pad = blocks * block - inp
    if pad:
        w = F.pad(w.movedim(1, -1), (0, pad)).movedim(-1, 1)
    w = w.reshape(out, blocks, block, *w.shape[2:])  # (O, nb, B, *k)
    return w.movedim(2, -1).reshape(-1, block)


def expand_blocks(t: torch.Tensor, block: int, in_channels: int) -> torch.Tensor:
    """Per-block values (O, nb, *k) repeated along axis 1 to (O, in_channels, *k)."""
    return t.repeat_interleave(block, dim=1)[:, :in_channels]
