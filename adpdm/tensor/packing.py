"""Packing of low-bit integer codes for checkpoints (two 4-bit values per byte)."""

from __future__ import annotations

import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack unsigned codes in ``[0, 15]`` two per byte (flattened; odd lengths padded)."""
    flat = codes.flatten().to(torch.uint8)
    if flat.numel() and int(flat.max()) > 15:
        raise ValueError("pack_int4 needs codes in [0, 15]")
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    return flat[0::2] | (flat[1::2] << 4)


def unpack_int4(packed: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: uint8 codes of ``shape``."""
    n = 1
    for d in shape:
        n *= d
    if packed.dtype != torch.uint8 or packed.numel() != (n + 1) // 2:
        raise ValueError(f"packed tensor of {packed.numel()} bytes cannot hold shape {tuple(shape)}")
    out = torch.stack([packed & 0x0F, packed >> 4], dim=1).flatten()
    return out[:n].reshape(shape)
